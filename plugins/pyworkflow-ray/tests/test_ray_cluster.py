"""The test cluster itself: two raylets, the custom resource on the second node only."""

from __future__ import annotations

from ray_cluster import RayCluster, node_ids


def test_the_cluster_has_two_raylets_and_one_special_node(ray_cluster: RayCluster) -> None:
    assert len(ray_cluster.raylets()) == 2
    nodes = node_ids(ray_cluster)
    assert nodes == ray_cluster.nodes
    assert nodes["head"] != nodes["special"]

"""In-process steps/s on MySQL / MariaDB storage, against raw aiomysql transactions in one run.

Run: ``python bench/mysql_steps.py [--steps 1000] [--workflows 100] [--repeats 3]
[--fsync on|off] [--json]`` (needs ``pip install ./plugins/pyworkflow-mysql``).

Starts its own MariaDB (``mariadbd`` from the Debian ``mariadb-server``
package, as the plugin's tests do) on 127.0.0.1 with a free port and a
throw-away data directory; with ``--fsync on`` (the default) InnoDB flushes its
log at every commit (``innodb_flush_log_at_trx_commit = 1``, the durable
default), with ``off`` once a second.
One process, the embedded worker, the public synchronous API
(``start()`` then ``get_result()``):

- one workflow of ``--steps`` sequential steps: µs per step and steps/s, and
  the CPU time this process spent per step (every thread: the client, the
  runtime's loop, the lease renewer), which the machine's load moves less;
- ``--workflows`` ten-step workflows one after another: workflows/s and steps/s;
- the reference, measured on the same server in the same run: one raw aiomysql
  transaction (``INSERT`` of a small row, ``COMMIT``) on one connection, in µs,
  and how many of them fit in one step's time.

Each figure is the best of ``--repeats`` measurements after a warm-up.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sql_steps

from pyworkflow.testing.servers import MariaDBServer


async def _raw_aiomysql(server: MariaDBServer, n: int) -> float:
    import aiomysql

    conn = await aiomysql.connect(
        host="127.0.0.1", port=server.port, user=server.user, db=server.database
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SHOW TABLES LIKE 'bench\\_raw'")
            if not await cur.fetchall():
                await cur.execute(
                    "CREATE TABLE bench_raw "
                    "(id BIGINT AUTO_INCREMENT PRIMARY KEY, payload TEXT) ENGINE=InnoDB"
                )
            insert = "INSERT INTO bench_raw (payload) VALUES (%s)"
            for i in range(50):  # warm-up
                await cur.execute(insert, (f'{{"result": {i}}}',))
                await conn.commit()
            began = time.perf_counter()
            for i in range(n):
                await cur.execute(insert, (f'{{"result": {i}}}',))
                await conn.commit()
            return (time.perf_counter() - began) / n * 1e6
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    def start_server(durable: bool) -> MariaDBServer:
        return MariaDBServer(durable=durable)

    def storage_url(server: MariaDBServer) -> str:
        return server.url.rsplit("/", 1)[0] + "/bench"

    def raw_transaction_us(server: MariaDBServer, n: int) -> float:
        return asyncio.run(_raw_aiomysql(server, n))

    return sql_steps.main(
        argv,
        description=(__doc__ or "").splitlines()[0],
        title="MySQL / MariaDB storage",
        start_server=start_server,
        storage_url=storage_url,
        raw_transaction_us=raw_transaction_us,
        raw_label="raw aiomysql INSERT+COMMIT",
    )


if __name__ == "__main__":
    raise SystemExit(main())

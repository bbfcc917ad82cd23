"""The seed's spelling of the Celery app: ``celery -A pyworkflow.celery.app worker``.

It needs the ``pyworkflow-celery`` plugin (``pip install pyworkflow-celery``);
the app itself lives in :mod:`pyworkflow_celery.app`.
"""

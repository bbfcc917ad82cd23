"""In-process steps/s on PostgreSQL storage, against raw asyncpg transactions in the same run.

Run: ``python bench/postgres_steps.py [--steps 1000] [--workflows 100] [--repeats 3]
[--fsync on|off] [--json]``.

Starts its own PostgreSQL (``initdb``/``pg_ctl`` from the Debian ``postgresql``
package, as the plugin's tests do) on 127.0.0.1 with a free port and a
throw-away data directory; fsync on by default, PostgreSQL's durable default.
One process, the embedded worker, the public synchronous API
(``start()`` then ``get_result()``):

- one workflow of ``--steps`` sequential steps: µs per step and steps/s, and
  the CPU time this process spent per step (every thread: the client, the
  runtime's loop, the lease renewer), which the machine's load moves less;
- ``--workflows`` ten-step workflows one after another: workflows/s and steps/s;
- the reference, measured on the same server in the same run: one raw asyncpg
  transaction (``BEGIN``, ``INSERT`` of a small row, ``COMMIT``) on one
  connection, in µs, and how many of them fit in one step's time.

Each figure is the best of ``--repeats`` measurements after a warm-up.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sql_steps

from pyworkflow.testing.servers import PostgresServer


async def _raw_asyncpg(url: str, n: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (id BIGSERIAL PRIMARY KEY, payload TEXT)"
        )
        insert = "INSERT INTO bench_raw (payload) VALUES ($1)"
        for i in range(50):  # warm-up: the prepared statement, the connection
            async with conn.transaction():
                await conn.execute(insert, f'{{"result": {i}}}')
        began = time.perf_counter()
        for i in range(n):
            async with conn.transaction():
                await conn.execute(insert, f'{{"result": {i}}}')
        return (time.perf_counter() - began) / n * 1e6
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    def start_server(durable: bool) -> PostgresServer:
        return PostgresServer(fsync=durable)

    def storage_url(server: PostgresServer) -> str:
        return f"{server.url}?schema=bench"

    def raw_transaction_us(server: PostgresServer, n: int) -> float:
        return asyncio.run(_raw_asyncpg(server.url, n))

    return sql_steps.main(
        argv,
        description=(__doc__ or "").splitlines()[0],
        title="PostgreSQL storage",
        start_server=start_server,
        storage_url=storage_url,
        raw_transaction_us=raw_transaction_us,
        raw_label="raw asyncpg BEGIN+INSERT+COMMIT",
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared subscriptions: two links in one `$share` group split a stream without overlap."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mqttkit import Publisher, needs_mosquitto, running_broker
from tocsin.mqtt.settings import BrokerConfig
from tocsin.sources.mqtt import BrokerLink

pytestmark = [pytest.mark.integration, needs_mosquitto]


def _config(port: int, client_id: str, version: str) -> BrokerConfig:
    return BrokerConfig(
        name="b",
        host="127.0.0.1",
        port=port,
        version=version,
        client_id=client_id,
        keepalive=30,
        session_expiry=600,
        receive_maximum=1000,
        username=None,
        password=None,
        tls=None,
        reconnect_min=0.05,
        reconnect_max=0.5,
        outbox_limit=100,
    )


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_two_daemons_split_one_stream(tmp_path: Path, version: str) -> None:
    """Test that each message of a `$share/GROUP/filter` goes to exactly one member."""
    with running_broker(tmp_path / "broker") as broker:
        links = [
            BrokerLink(_config(broker.port, f"tocsin-{n}", version), [("$share/ops/load/#", 1)])
            for n in range(2)
        ]
        tasks = [asyncio.create_task(link.run()) for link in links]
        try:
            async with asyncio.timeout(10):
                for link in links:
                    await link.connected()
            total = 2000
            with Publisher(broker.port) as pub:
                Publisher.wait(
                    pub.send((f"load/{n % 5}", json.dumps({"n": n})) for n in range(total))
                )
            got: list[list[int]] = [[], []]
            async with asyncio.timeout(10):
                while sum(map(len, got)) < total:
                    for link, mine in zip(links, got, strict=True):
                        taken = link.take(10_000)
                        mine.extend(json.loads(d[6])["n"] for d in taken)
                        link.ack([(d[0], d[1]) for d in taken])
                    await asyncio.sleep(0.01)
            assert sorted(got[0] + got[1]) == list(range(total))
            assert got[0], "the second member got everything: the group did not split"
            assert got[1], "the first member got everything: the group did not split"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

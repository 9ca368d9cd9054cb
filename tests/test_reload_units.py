"""A reload's decisions, without processes: one model's owner given new keys (`respec`) or
removed (`retire`) through its inbox, with the fake launcher and clock; the diff of two
configurations; reloads one at a time. tests/test_reload.py does it all with the real server.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi import FastAPI
from owner_doubles import FakeClock, FakeLauncher, spec, until

from supervisor.config import ModelSpec, Overrides, load_settings
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.reload import RESTART_SERVER_KEYS, Reloader, diff, in_force


@pytest.fixture
async def owners() -> AsyncIterator[list[ModelOwner]]:
    made: list[ModelOwner] = []
    yield made
    await asyncio.wait_for(asyncio.gather(*(o.close() for o in made)), 10)


def _owner(owners: list[ModelOwner], launcher: FakeLauncher, **fields: object) -> ModelOwner:
    owner = ModelOwner(spec(**fields), launcher, clock=FakeClock())  # type: ignore[arg-type]
    owner.start()
    owners.append(owner)
    return owner


def _new_options(owner: ModelOwner, **options: Any) -> ModelSpec:
    return dataclasses.replace(owner.spec, options=msgspec.structs.replace(owner.spec.options, **options))


async def _use(owner: ModelOwner, hold: asyncio.Event | None = None, leased: asyncio.Event | None = None) -> int:
    async with owner.lease() as lease:
        if leased is not None:
            leased.set()
        if hold is not None:
            await hold.wait()
        pid = lease.worker.pid
    return pid


async def test_supervisor_keys_apply_to_the_running_worker(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    assert await _use(owner) == 1000
    how = await owner.respec(dataclasses.replace(owner.spec, ttl=600, description="new words"), 0.0)
    assert how == "applied"
    status = await owner.status()
    assert (status.ttl, status.description, status.pid) == (600, "new words", 1000)
    assert await _use(owner) == 1000 and launcher.calls == 1  # no new worker for them


async def test_new_options_wait_for_the_request_in_flight_then_replace_the_worker(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    hold, leased = asyncio.Event(), asyncio.Event()
    busy = asyncio.create_task(_use(owner, hold, leased))
    await leased.wait()
    new = _new_options(owner, beam_size=1)
    assert await owner.respec(new, 0.0) == "replaced once idle"
    late = asyncio.create_task(_use(owner))
    status = await until(owner, lambda s: s.queued == 1)  # new requests wait for the new options
    assert status.state == "ready" and status.pid == 1000 and not launcher.workers[0].stopping.is_set()
    hold.set()
    assert await busy == 1000  # finished on the worker it started on
    assert await late == 1001
    assert owner.spec == new and launcher.alive == {1001}
    assert (await owner.status()).unloads == {"reload": 1}


async def test_new_options_replace_an_idle_worker_at_once(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    await _use(owner)
    assert await owner.respec(_new_options(owner, beam_size=2), 0.0) == "replacing"
    status = await until(owner, lambda s: s.state == "ready" and s.pid == 1001)  # loaded, with no request
    assert status.unloads == {"reload": 1} and launcher.alive == {1001}


async def test_new_options_for_an_unloaded_model_start_nothing(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    assert await owner.respec(_new_options(owner, beam_size=2), 0.0) == "applied"
    assert (await owner.status()).state == "unloaded" and launcher.calls == 0


async def test_new_options_clear_a_failed_models_back_off(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(fail=1)
    owner = _owner(owners, launcher)
    with pytest.raises(ModelUnavailable):
        await _use(owner)
    with pytest.raises(ModelUnavailable, match="retrying in"):
        await _use(owner)  # backing off
    assert await owner.respec(_new_options(owner, compute_type="float32"), 0.0) == "applied"
    assert await _use(owner) == 1000  # tried at once with the new options


async def test_new_options_during_a_load_restart_it_with_them(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)
    owner = _owner(owners, launcher)
    request = asyncio.create_task(_use(owner))
    await launcher.launching.wait()
    assert await owner.respec(_new_options(owner, beam_size=3), 0.0) == "replacing"
    await until(owner, lambda s: launcher.aborted == 1)
    launcher.proceed.set()
    assert await request == 1000  # served by the start with the new options
    assert launcher.calls == 2 and owner.spec.options.beam_size == 3


async def test_retire_finishes_the_request_in_flight_then_ends(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    hold, leased = asyncio.Event(), asyncio.Event()
    busy = asyncio.create_task(_use(owner, hold, leased))
    await leased.wait()
    retired = owner.retire()
    straggler = await _use(owner)  # one that had found the model before it was removed: still served
    assert straggler == 1000 and not retired.done() and not launcher.workers[0].stopping.is_set()
    hold.set()
    assert await busy == 1000
    assert await retired == "retired"
    assert launcher.alive == set() and not owner.running
    with pytest.raises(ModelUnavailable):
        await _use(owner)


async def test_retire_of_an_unloaded_model_ends_at_once(owners: list[ModelOwner]) -> None:
    owner = _owner(owners, FakeLauncher())
    assert await owner.retire() == "retired"
    assert not owner.running


async def test_retire_during_a_preload_aborts_it(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher(hold=True)
    owner = _owner(owners, launcher)
    preload = asyncio.create_task(owner.load())
    await launcher.launching.wait()
    assert await owner.retire() == "retired"
    with pytest.raises(ModelUnavailable, match="removed"):
        await preload
    assert launcher.aborted == 1 and launcher.alive == set()


async def test_a_model_brought_back_before_it_ended_keeps_serving(owners: list[ModelOwner]) -> None:
    launcher = FakeLauncher()
    owner = _owner(owners, launcher)
    hold, leased = asyncio.Event(), asyncio.Event()
    busy = asyncio.create_task(_use(owner, hold, leased))
    await leased.wait()
    retired = owner.retire()
    assert await owner.respec(owner.spec, 0.0) == "applied"
    assert await retired == "kept"
    hold.set()
    assert await busy == 1000
    assert await _use(owner) == 1000 and owner.running  # the same worker: nothing changed for it
    assert (await owner.status()).state == "ready"


CONFIG = """
[server]
default_model = "tiny.en"
[models."tiny.en"]
source = "bundled"
"""


class _SlowRegistry:
    """Stands in for the registry: each reload's settling waits for `proceed`."""

    def __init__(self) -> None:
        self.calls = 0
        self.at_once = 0
        self.most_at_once = 0
        self.proceed = asyncio.Event()

    def reconfigure(self, new: object) -> Any:
        self.calls += 1
        return self._settle()

    async def _settle(self) -> dict[str, str]:
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        await self.proceed.wait()
        self.at_once -= 1
        return {}


async def test_reloads_asked_during_one_are_answered_by_one_more(tmp_path: Path) -> None:
    config = tmp_path / "asr.toml"
    config.write_text(CONFIG)
    app = FastAPI()
    app.state.settings = load_settings(config)
    registry = _SlowRegistry()
    reloader = Reloader(app, registry)  # type: ignore[arg-type]
    first = asyncio.create_task(reloader.reload())
    while registry.calls == 0:
        await asyncio.sleep(0)
    later = [asyncio.create_task(reloader.reload()) for _ in range(3)]  # three SIGHUPs meanwhile
    await asyncio.sleep(0)
    registry.proceed.set()
    reports = await asyncio.gather(first, *later)
    assert registry.calls == 2 and registry.most_at_once == 1  # the first, then one for the three
    assert reports[1] is reports[2] is reports[3]


def test_server_keys_that_need_a_restart_keep_their_running_values(tmp_path: Path) -> None:
    config = tmp_path / "asr.toml"
    config.write_text(CONFIG)
    old = load_settings(config, Overrides(port=5555))
    config.write_text(CONFIG.replace("[server]", '[server]\nport = 6000\nhost = "0.0.0.0"\napi_keys = ["k"]'))
    new = load_settings(config, Overrides(port=5555))
    found = diff(old, new)
    assert found.needs_restart == ["host"]  # the flag --port still wins over the file
    assert found.applied == ["api_keys"]
    kept = in_force(old, new)
    assert kept.server.host == "127.0.0.1" and kept.api_keys == ("k",)
    assert "host" in RESTART_SERVER_KEYS and "api_keys" not in RESTART_SERVER_KEYS

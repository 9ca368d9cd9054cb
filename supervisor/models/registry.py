"""The configured models, each behind its own `ModelOwner`, and the shared worker plumbing.

A reload (`reconfigure`) swaps the set of models in one step of the event loop: names,
aliases and the default change together, so a request resolves either in the old set or
in the new one. What each model then does is its owner's business, told through its inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import zmq.asyncio

from supervisor.config import OPENAI_ALIAS, ModelSpec, ServerTable, Settings
from supervisor.models import files as model_files
from supervisor.models.capacity import Capacity
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.models.policy import Limits
from supervisor.models.snapshot import ModelSnapshot
from supervisor.models.spares import SparePool
from supervisor.workers import runtime_dir
from supervisor.workers.process import Timeouts, WorkerLost, WorkerProcess

log = logging.getLogger("asr.registry")


class UnknownModel(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"The model '{name}' does not exist. Available models: {', '.join(known)}")
        self.name = name


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_model = settings.default_model
        self._ctx: zmq.asyncio.Context | None = None
        self._runtime_dir: Path | None = None
        self._timeouts = _timeouts(settings.server)
        # Models a reload removed, still finishing their requests: they hold memory, so the
        # gate counts them, but no new request can name them.
        self._retiring: dict[str, ModelOwner] = {}
        self._retirements: set[asyncio.Task[None]] = set()
        self.capacity = Capacity(_limits(settings.server), lambda: [*self._owners.values(), *self._retiring.values()])
        self._owners = {name: self._new_owner(spec) for name, spec in settings.models.items()}
        self._preloads: list[asyncio.Task[None]] = []
        self._closed = False
        self.spares = SparePool(
            self._spawn_spare, enabled=bool(settings.server.warm_spare), backends=_backends(settings)
        )

    async def start(self) -> None:
        self._runtime_dir = runtime_dir.create(self.settings.server.runtime_dir)
        self._ctx = zmq.asyncio.Context()
        for owner in self._owners.values():
            owner.start()
        self.spares.start()
        # Preloads run in the background: the server answers /health (state "starting")
        # while large models load, instead of refusing connections.
        self._preloads = [
            asyncio.create_task(self._preload(owner)) for owner in self._owners.values() if owner.spec.preload
        ]

    async def close(self) -> None:
        """Shutdown, in order: stop preloading, stop every worker (in parallel), release the plumbing."""
        self._closed = True
        for task in self._preloads:
            task.cancel()
        owners = [*self._owners.values(), *self._retiring.values()]
        await asyncio.gather(self.spares.close(), *(owner.close() for owner in owners), return_exceptions=True)
        await asyncio.gather(*self._retirements, return_exceptions=True)
        if self._ctx is not None:
            self._ctx.term()
        if self._runtime_dir is not None:
            runtime_dir.remove(self._runtime_dir)

    def get(self, name: str | None) -> ModelOwner:
        """The owner of `name` or an alias of it (the default model when None or empty)."""
        return self._owners[self.resolve(name)]

    def resolve(self, name: str | None) -> str:
        """The configured model a client's name means; UnknownModel if none."""
        if not name:
            return self.default_model
        if name in self._owners:
            return name
        if name in self.settings.aliases:
            return self.settings.aliases[name]
        if name == OPENAI_ALIAS:
            return self.default_model
        raise UnknownModel(name, list(self._owners))

    def knows(self, name: str | None) -> bool:
        try:
            self.resolve(name)
        except UnknownModel:
            return False
        return True

    def set_default(self, name: str) -> str:
        """Make `name` (or what it aliases) the default model; returns the model's name."""
        self.default_model = self.resolve(name)
        return self.default_model

    def aliases_of(self, name: str) -> list[str]:
        named = [alias for alias, target in self.settings.aliases.items() if target == name]
        if name == self.default_model and OPENAI_ALIAS not in self.settings.aliases:
            named.append(OPENAI_ALIAS)
        return named

    def names(self) -> list[str]:
        return list(self._owners)

    def snapshot(self, *, retiring: bool = False) -> dict[str, ModelSnapshot]:
        """Every configured model; with `retiring`, also those a reload removed whose workers
        still finish their requests (their memory and PIDs are real until then)."""
        owners = {**self._retiring, **self._owners} if retiring else self._owners
        return {name: owner.snapshot() for name, owner in owners.items()}

    def retiring(self) -> list[str]:
        """Models a reload removed whose workers are still finishing requests."""
        return list(self._retiring)

    def reconfigure(self, new: Settings) -> Coroutine[Any, Any, dict[str, str]]:
        """Serve `new` (validated; the server keys that cannot change live already put back).

        The new set is in force when this returns; await the result for what happened to each model that changed: "added", "removed", or its owner's
        answer ("applied", "replacing", "replaced once idle"). A model that an earlier reload
        removed and this one adds back while its worker still finishes requests keeps that
        owner (and worker, unless its options changed). The swap itself does not await: a
        request sees the old set or the new one, never a name without its owner.
        """
        if self._closed:
            raise RuntimeError("the server is stopping")
        old = self.settings
        owners: dict[str, ModelOwner] = {}
        changes: dict[str, str] = {}
        answers: dict[str, asyncio.Future[str]] = {}
        for name, spec in new.models.items():
            owner = self._owners.get(name)
            back = self._retiring.pop(name, None) if owner is None else None
            if back is not None and back.running:  # still finishing: it serves again
                owner = back
                changes[name] = "added"
            if owner is None:
                owner = self._new_owner(spec)
                owner.start()
                changes[name] = "added"
            elif owner is back or owner.spec != spec:  # a respec also tells a retiring owner it stays
                answers[name] = owner.respec(spec, model_files.memory_estimate_mb(spec))
            owners[name] = owner
        for name, owner in self._owners.items():
            if name not in owners:
                self._retire(name, owner)
                changes[name] = "removed"
        self._owners = owners
        self.settings = new
        if new.default_model != old.default_model or self.default_model not in owners:
            self.default_model = new.default_model  # else a default chosen at run time stands
        self._timeouts = _timeouts(new.server)
        self.capacity.limits = _limits(new.server)
        self.capacity.notify()  # a larger limit may let a waiting load in now
        return self._settle(new, changes, answers)

    async def _settle(
        self, new: Settings, changes: dict[str, str], answers: dict[str, asyncio.Future[str]]
    ) -> dict[str, str]:
        """The rest of a reload, once the new set is in force: the owners' answers, spares, preloads."""
        owners = self._owners
        for name, answer in answers.items():
            how = await answer
            changes.setdefault(name, how)
        await self.spares.reconfigure(bool(new.server.warm_spare), _backends(new))
        self._preloads = [task for task in self._preloads if not task.done()]
        self._preloads += [
            asyncio.create_task(self._preload(owners[name]))
            for name in changes
            if name in owners and new.models[name].preload
        ]
        return changes

    def _new_owner(self, spec: ModelSpec) -> ModelOwner:
        return ModelOwner(
            spec, self._launch, gate=self.capacity, memory_estimate_mb=model_files.memory_estimate_mb(spec)
        )

    def _retire(self, name: str, owner: ModelOwner) -> None:
        """`name` was removed: no new request can name it; its owner ends once idle."""
        if not owner.running:
            return
        self._retiring[name] = owner
        done = owner.retire()

        async def forget() -> None:
            how = await done
            if self._retiring.get(name) is owner:
                del self._retiring[name]
            log.info("model=%s removed by a reload: %s", name, how)

        task = asyncio.create_task(forget(), name=f"retire-{name}")
        self._retirements.add(task)
        task.add_done_callback(self._retirements.discard)

    async def _launch(self, spec: ModelSpec, on_exit: Callable[[WorkerProcess], None]) -> WorkerProcess:
        """A READY worker for `spec`: the warm spare if there is one, else a fresh process.

        A spare that goes silent or dies under LOAD without a reason of its own (`WorkerLost`)
        failed, not the model: the load goes on once with a fresh process. Only what that
        fresh process fails with (or what a worker says is wrong with the model) reaches
        the owner, which marks the model failed.
        """
        spare = self.spares.take(spec.backend)
        if spare is not None:
            try:
                return await self._load(spare, spec, on_exit)
            except WorkerLost as exc:
                log.warning("model=%s the warm spare failed (%s); loading on a fresh worker", spec.name, exc)
        return await self._load(await self._spawn(spec.backend, on_exit), spec, on_exit)

    async def _load(
        self, worker: WorkerProcess, spec: ModelSpec, on_exit: Callable[[WorkerProcess], None]
    ) -> WorkerProcess:
        try:
            # The budget's room is read now, after the capacity gate admitted the model: its
            # worker takes extra model copies only within it (lane_weights = "auto").
            await worker.load(spec, on_exit, room_mb=self.capacity.room_mb(spec.name))
        except BaseException as exc:
            how = await worker.stop()  # a failed or aborted load leaves no process behind
            if isinstance(exc, asyncio.CancelledError):
                log.info("model=%s load aborted: worker pid=%d ended by %s", spec.name, worker.pid, how)
            raise
        return worker

    async def _spawn(
        self, backend: str, on_exit: Callable[[WorkerProcess], None], prewarm: bool = False
    ) -> WorkerProcess:
        assert self._ctx is not None and self._runtime_dir is not None, "registry not started"
        return await WorkerProcess.spawn(backend, self._ctx, self._runtime_dir, self._timeouts, on_exit, prewarm)

    async def _spawn_spare(self, backend: str, on_exit: Callable[[WorkerProcess], None]) -> WorkerProcess:
        return await self._spawn(backend, on_exit, prewarm=True)

    async def _preload(self, owner: ModelOwner) -> None:
        with contextlib.suppress(ModelUnavailable):
            await owner.load()


def _timeouts(server: ServerTable) -> Timeouts:
    return Timeouts(
        ready=server.ready_timeout,
        stop=server.stop_timeout,
        heartbeat_interval=server.heartbeat_interval,
        heartbeat=server.heartbeat_timeout,
    )


def _limits(server: ServerTable) -> Limits:
    return Limits(server.max_loaded_models, server.memory_budget_mb, server.capacity_wait)


def _backends(settings: Settings) -> list[str]:
    """The backends a spare is kept for: the default model's first (the one `/health` shows),
    of those `warm_spare` names when it is a list."""
    backends = [settings.models[settings.default_model].backend, *(spec.backend for spec in settings.models.values())]
    wanted = settings.server.warm_spare
    return [b for b in backends if b in wanted] if isinstance(wanted, list) else backends

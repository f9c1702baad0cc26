"""Training checkpoints: an Orbax CheckpointManager over ``<output_dir>/checkpoints/<step>/{state,meta}``.

* ``state``: the train-state dict `{"step", "params", "opt_state", "rng"}` as an Orbax PyTree (the format
  `params_io.load_params` reads the params out of);
* ``meta``: a JSON dict (data iterator position, config, anything JSON), plus ``"step"``.

Guarantees the loop relies on:

* Saves are asynchronous (`async_save=True`): `save` returns once the arrays are copied off the devices (Orbax's
  `transfer_arrays_to_host` blocks while no `save_device_host_concurrent_gb` limit is set, as here), so the next
  train step may donate the state; the files are written in the background and the step directory appears under its
  final name only when complete (Orbax writes ``<step>.orbax-checkpoint-tmp-*`` and renames it).
* `latest_step` returns the newest COMPLETE checkpoint: temporary directories of a killed process are never
  considered (and are deleted when the next Checkpointer opens the directory), and a ``<step>/`` folder missing any
  of Orbax's finalisation files is skipped with a warning.
* `restore` reads every array straight into the shardings given (any mesh, not only the one that saved) and returns
  bitwise the saved values; keep-last-K deletes older steps after each save.

`Checkpointer(output_dir)` takes the run's output folder; passing ``<output_dir>/checkpoints`` itself also works.
Paths go through etils.epath as camel_jax.storage configures it, so ``gs://`` output folders work as on local disk
(there a step counts as complete only once Orbax has written its ``commit_success.txt``).
"""
from __future__ import annotations

import json
import logging
from typing import Any

import jax
from etils import epath

from camel_jax import storage
from camel_jax.model.config import LlamaConfig
from camel_jax.params_io import STATE_ITEM
from camel_jax.model.partition import path_str

META_ITEM = "meta"
CHECKPOINTS_DIR = "checkpoints"
# Files Orbax writes into a step directory and its items only when the save completed.
_FINAL_FILES = ("_CHECKPOINT_METADATA", f"{STATE_ITEM}/_METADATA")

log = logging.getLogger(__name__)


def _is_primary() -> bool:
    return jax.process_index() == 0


class Checkpointer:
    """Save/restore train states with Orbax; see the module docstring for the guarantees."""

    def __init__(self, output_dir: str, keep: int | None = 3, async_save: bool = True):
        import orbax.checkpoint as ocp

        path = epath.Path(storage.resolve(output_dir))
        if path.name == CHECKPOINTS_DIR:
            self.output_dir, self.directory = str(path.parent), str(path)
        else:
            self.output_dir, self.directory = str(path), str(path / CHECKPOINTS_DIR)
        if keep is not None and keep < 1:
            raise ValueError(f"keep (train.keep_checkpoints) must be >= 1 or None for all, got {keep}")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True,
                                               cleanup_tmp_directories=True)
        self._ocp = ocp
        self._mngr = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE_ITEM: ocp.PyTreeCheckpointHandler(), META_ITEM: ocp.JsonCheckpointHandler()})

    # ---- queries -------------------------------------------------------------------------------------------------
    def step_dir(self, step: int) -> str:
        return str(epath.Path(self.directory) / str(int(step)))

    def is_complete(self, step: int) -> bool:
        d = epath.Path(self.step_dir(step))
        return (d.is_dir() and (d / META_ITEM).is_dir() and all((d / f).exists() for f in _FINAL_FILES)
                and self._ocp.step.is_path_finalized(d))

    def all_steps(self) -> list[int]:
        """Steps of complete checkpoints on disk, oldest first. Read from the directory itself (not Orbax's cached
        list, which must not be reloaded while a save is in flight); a save in progress is not listed yet."""
        directory = epath.Path(self.directory)
        if not directory.is_dir():
            return []
        steps = []
        for name in (p.name for p in directory.iterdir()):
            if not name.isdigit():
                continue  # Orbax temporary folders, stray files
            if self.is_complete(int(name)):
                steps.append(int(name))
            else:
                log.warning("ignoring incomplete checkpoint %s (missing Orbax finalisation files)", self.step_dir(int(name)))
        return sorted(steps)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # ---- save ----------------------------------------------------------------------------------------------------
    def save(self, step: int, state: dict, meta: dict | None = None) -> bool:
        """Start saving `state` (and the JSON-serialisable `meta`) as checkpoint `step`; returns once the arrays are
        off the devices. Returns False (nothing written) when a complete checkpoint of that step already exists."""
        step = int(step)
        meta = dict(meta or {}, step=step)
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as e:
            raise TypeError(f"checkpoint meta for step {step} is not JSON-serialisable: {e}") from None
        if epath.Path(self.step_dir(step)).is_dir():
            if self.is_complete(step):
                return False
            self._mngr.wait_until_finished()
            if _is_primary():  # an unfinished folder under the final name: not loadable, make room for the new one
                log.warning("replacing incomplete checkpoint %s", self.step_dir(step))
                epath.Path(self.step_dir(step)).rmtree()
            self._mngr.reload()
        args = self._ocp.args
        return bool(self._mngr.save(step, args=args.Composite(**{STATE_ITEM: args.PyTreeSave(state),
                                                                 META_ITEM: args.JsonSave(meta)}), force=True))

    def wait(self) -> None:
        """Block until the pending asynchronous save (if any) is on disk and finalised."""
        self._mngr.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release Orbax's background threads."""
        self._mngr.wait_until_finished()
        self._mngr.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- restore -------------------------------------------------------------------------------------------------
    def restore(self, step: int | None, abstract_state: Any, shardings: Any = None) -> tuple[dict, dict]:
        """(state, meta) of checkpoint `step` (None: the latest complete one), each array read directly into its
        sharding: from `shardings` when given (a tree like `state.state_shardings(...)`), else from the leaves of
        `abstract_state` (ShapeDtypeStructs with `.sharding`, e.g. `state.sharded_abstract_state`, or jax Arrays)."""
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        step = int(step)
        if not self.is_complete(step):
            raise FileNotFoundError(f"checkpoint {self.step_dir(step)} does not exist or is incomplete; complete "
                                    f"ones: {self.all_steps()}")
        if shardings is not None:
            target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract_state, shardings)
        else:
            target = abstract_state
        for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]:
            if getattr(leaf, "sharding", None) is None:
                raise ValueError(f"restore needs a sharding for every leaf; {jax.tree_util.keystr(path)} has none "
                                 f"(pass shardings= or ShapeDtypeStructs with sharding)")
        self._check_saved_shapes(step, target)
        restore_args = jax.tree.map(lambda a: self._ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape,
                                                                         dtype=a.dtype), target)
        args = self._ocp.args
        try:
            out = self._mngr.restore(step, args=args.Composite(**{
                STATE_ITEM: args.PyTreeRestore(item=target, restore_args=restore_args),
                META_ITEM: args.JsonRestore()}))
        except (ValueError, KeyError) as e:
            raise ValueError(f"{self.step_dir(step)}: the saved train state does not match this model/optimizer "
                             f"(different preset or optimizer settings?): {e}") from e
        state, meta = out[STATE_ITEM], dict(out[META_ITEM] or {})
        saved_step = int(jax.device_get(state["step"]))
        if saved_step != step:
            raise ValueError(f"{self.step_dir(step)}: the train state inside says step {saved_step}")
        return state, meta

    def _check_saved_shapes(self, step: int, target: Any) -> None:
        """Compare the saved tree's leaf names and shapes with the target before reading any array, so a wrong
        preset or optimizer fails with a readable list rather than deep inside tensorstore."""
        md = self._mngr.item_metadata(step)[STATE_ITEM]
        md = getattr(md, "tree", md)
        saved = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(md)[0]:
            if hasattr(leaf, "shape"):
                saved[path_str(path).replace("/", ".")] = tuple(leaf.shape)
        wanted = {path_str(p).replace("/", "."): tuple(a.shape)
                  for p, a in jax.tree_util.tree_flatten_with_path(target)[0]}
        problems = [f"{k}: saved {saved[k]}, expected {v}" for k, v in wanted.items() if k in saved and saved[k] != v]
        problems += [f"{k}: not in the checkpoint" for k in wanted if k not in saved]
        problems += [f"{k}: in the checkpoint but not in this train state" for k in saved if k not in wanted]
        if problems:
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            raise ValueError(f"{self.step_dir(step)}: the saved train state does not match this model/optimizer "
                             f"(different preset or optimizer settings?): " + "; ".join(problems[:8]) + more)

    # ---- run files -----------------------------------------------------------------------------------------------
    def write_model_config(self, cfg: LlamaConfig) -> str:
        """<output_dir>/model_config.json (what params_io.load_params/export read next to checkpoints/)."""
        from camel_jax.params_io import CONFIG_FILE, config_to_dict

        path = epath.Path(self.output_dir) / CONFIG_FILE
        if _is_primary():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / (CONFIG_FILE + ".tmp")
            tmp.write_text(json.dumps(config_to_dict(cfg), indent=1))
            tmp.rename(path)
        return str(path)

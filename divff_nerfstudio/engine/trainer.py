"""nerfstudio's trainer, made safe to interrupt: a CPU run takes hours and must survive Ctrl-C,
kills and full disks without losing work or resuming from a broken file.

- Checkpoints are staged under a hidden name, synced and renamed (checkpoints.py), and older ones
  are deleted only after the new one is in place: a kill during a save leaves the previous
  checkpoint as the newest complete one. A save that fails (disk full) stops training with a
  message naming the file; the previous checkpoint stays.
- Ctrl-C (or SIGTERM) finishes the current step, saves it and exits with status 130, printing the
  command that resumes; a second Ctrl-C quits at once.
- `--load-dir` takes the newest checkpoint that loads (a truncated one is reported and skipped).
- Checkpoints also hold the random generators' states, and `--max-num-iterations` counts from step
  0 rather than from the loaded step, so a resumed run draws the same rays and ends at the same
  step as an uninterrupted one: it reaches the same model.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Literal, Optional, Type

import yaml
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms, writer
from nerfstudio.utils.rich_utils import CONSOLE

from divff_nerfstudio.engine.checkpoints import (
    CheckpointError,
    checkpoints_newest_first,
    newest_complete_checkpoint,
    read_checkpoint,
    remove_staged_checkpoints,
    write_checkpoint,
)
from divff_nerfstudio.engine.distributed import gather_objects
from divff_nerfstudio.engine.random_state import random_states, restore_random_states
from divff_nerfstudio.utils.atomic_files import atomic_write

INTERRUPTED_EXIT_STATUS = 130  # the shell's status for a process ended by SIGINT
_DDP_PREFIX = "_model.module."


def _own_random_states(state: Dict, rank: int, world_size: int) -> Optional[Dict]:
    """This rank's generators when the checkpoint was saved by as many processes; otherwise rank
    0's (a run resumed with another process count cannot draw the same rays anyway)."""
    of_ranks = state.get("random_states_of_ranks")
    if of_ranks is not None and len(of_ranks) == world_size:
        return of_ranks[rank]
    return state.get("random_states")


@dataclass
class DivffTrainerConfig(TrainerConfig):
    _target: Type = field(default_factory=lambda: DivffTrainer)


class DivffTrainer(Trainer):
    config: DivffTrainerConfig

    def __init__(self, config: DivffTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, local_rank, world_size)
        self._interrupted = False
        self._previous_handlers: Dict[int, object] = {}
        self._done_step = -1  # the last step whose update finished

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        """Setting up extracts the language targets, which can take long: Ctrl-C there ends with
        a message and status 130 (nerfstudio would print a traceback and exit 0); the frames
        extracted so far stay in the cache."""
        try:
            super().setup(test_mode)
        except KeyboardInterrupt:
            CONSOLE.print(
                "[bold yellow]Interrupted while setting up (loading frames, extracting targets).[/] "
                "Targets extracted so far stay cached: run the same command again to go on from there."
            )
            sys.exit(INTERRUPTED_EXIT_STATUS)
        self._save_resolved_config()

    def _save_resolved_config(self) -> None:
        """config.yml once more, now with what the model chose for this device (implementation,
        grid and sample sizes; model/device_preset.py): nerfstudio wrote it before the model was
        built, and a run must load with the sizes it was trained with on any machine."""
        path = self.base_dir / "config.yml"
        if comms.is_main_process() and path.exists():
            atomic_write(path, lambda f: f.write(yaml.dump(self.config).encode("utf8")), staging=path.parent)

    # ------------------------------------------------------------------ loading
    def _load_checkpoint(self) -> None:
        """Resolve --load-dir to the newest complete checkpoint, then let nerfstudio load it; the
        random states saved with it are restored last, right before training continues."""
        state = None
        if self.config.load_dir is not None:
            load_dir = Path(self.config.load_dir)
            remove_staged_checkpoints(load_dir.parent)
            if self.config.load_step is not None:
                path = load_dir / f"step-{self.config.load_step:09d}.ckpt"
                if not path.exists():
                    raise CheckpointError(f"{path}: no checkpoint of step {self.config.load_step} in --load-dir")
                state = read_checkpoint(path)
            else:
                state = newest_complete_checkpoint(load_dir)
                self.config.load_step = state["step"]
        elif self.config.load_checkpoint is not None:
            if not Path(self.config.load_checkpoint).exists():
                raise CheckpointError(f"{self.config.load_checkpoint}: --load-checkpoint does not exist")
            state = read_checkpoint(Path(self.config.load_checkpoint))
        states = _own_random_states(state, self.local_rank, self.world_size) if state is not None else None
        del state  # nerfstudio reads the file again with its own loader
        super()._load_checkpoint()
        self._done_step = self._start_step - 1
        if states is not None:
            restore_random_states(states)

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint content plus the random states, written atomically by rank 0;
        older checkpoints are removed only once this one is complete. With several processes each
        rank draws its own rays, so every rank's generators are kept, and the model's parameters
        are saved without DDP's `module.` prefix: one checkpoint, whatever the process count."""
        if step < 0:  # nothing trained yet
            return
        states = gather_objects(random_states())
        if not comms.is_main_process():
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = {
            "_model." + k[len(_DDP_PREFIX) :] if k.startswith(_DDP_PREFIX) else k: v for k, v in self.pipeline.state_dict().items()
        }
        state = {
            "step": step,
            "pipeline": pipeline,
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
            "random_states": states[0],
        }
        if len(states) > 1:
            state["random_states_of_ranks"] = states
        write_checkpoint(path, state, staging=self.checkpoint_dir.parent)
        if self.config.save_only_latest_checkpoint:
            for old in checkpoints_newest_first(self.checkpoint_dir):
                if old != path:
                    old.unlink()

    # ------------------------------------------------------------------ the run
    def train(self) -> None:
        """Train until step max_num_iterations - 1, counted from 0 (so a resumed run stops where
        the uninterrupted one would), saving and exiting cleanly on Ctrl-C or a failed save."""
        total = self.config.max_num_iterations
        if self._start_step >= total:
            CONSOLE.print(
                f"[yellow]The checkpoint loaded is of step {self._start_step - 1}: already trained for "
                f"--max-num-iterations {total}. Give a larger --max-num-iterations to train further."
            )
            return
        self.config.max_num_iterations = total - self._start_step
        self._catch_interrupts()
        try:
            super().train()
        except CheckpointError as err:
            writer.write_out_storage()
            CONSOLE.print(f"[bold red]Training stopped: {err}")
            if checkpoints_newest_first(self.checkpoint_dir):
                CONSOLE.print(f"Free some space, then resume with the same command plus: --load-dir {self.checkpoint_dir}")
            sys.exit(1)
        finally:
            self.config.max_num_iterations = total
            self._release_interrupts()

    def train_iteration(self, step: int):
        out = super().train_iteration(step)
        self._done_step = step
        return out

    def _after_train(self) -> None:
        self._release_interrupts()  # a finished run's viewer quits on the first Ctrl-C, as usual
        self.step = self._done_step  # an interrupted loop stops before running self.step
        if not self._interrupted:
            super()._after_train()
            return
        self.save_checkpoint(self.step)
        writer.write_out_storage()
        CONSOLE.print(
            f"[bold yellow]Interrupted after step {self.step}; checkpoint saved in {self.checkpoint_dir}.[/]\n"
            f"Resume with the same command plus: --load-dir {self.checkpoint_dir}"
        )
        sys.exit(INTERRUPTED_EXIT_STATUS)

    def _catch_interrupts(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread

        def stop_after_this_step(signum: int, frame) -> None:
            if self._interrupted:
                raise KeyboardInterrupt  # a second Ctrl-C: quit now, the last saved checkpoint stays
            self._interrupted = True
            self.stop_training = True
            CONSOLE.print(
                f"[yellow]{signal.Signals(signum).name}: finishing step {self.step} and saving a checkpoint "
                "(press Ctrl-C again to quit without saving)"
            )

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, stop_after_this_step)

    def _release_interrupts(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

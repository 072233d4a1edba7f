"""The search protocol of ``gloss tune``, the same for every loss: a shared learning-rate grid, then the same
number of trials of the loss's own parameters at the best learning rate of that grid.

**Phase 1, ``grid``.** One trial per value of a learning-rate grid that every loss shares (``--lr-grid``;
at ``--train-layers 0``, where no pre-trained weight trains and the adapter and head learn at ``--head-lr``,
``--head-lr-grid`` over ``--head-lr``), the loss's own parameters at the command line's values (by default
the paper's). Every loss is offered the same learning rates, so a gap between tuned losses cannot come from
the learning rates they happened to draw. The grid trials are queued in the study when it is created.

**Phase 2, ``own``.** ``--trials N`` trials of the loss's own parameters (``spaces.toml``: sigma, lambda and
gamma of G-Loss; temperature and lambda of SupCon and LCL; ``head-lr`` of ce, whose only other parameter is
the learning rate) with the grid parameter fixed at the best complete grid trial's value. Every loss gets the
same N. ``best.json`` is the best complete trial of both phases.

**Sampler.** Optuna's ``QMCSampler`` (a scrambled Sobol sequence seeded by ``--tune-seed``) inside Optuna's
``PartialFixedSampler`` (which holds the grid parameter at its best value). Why not TPE: at the budgets a
CPU affords here (N of about 8 per loss) TPE never leaves its 10 random start-up trials, so it would be a
seeded random search; a Sobol sequence covers the space more evenly than random draws of the same number.
Why not a seeded random sampler: rebuilt on resuming it draws its first values again, so a resumed study
would repeat earlier parameter sets. The QMC sampler keeps its position in the sequence in the study's
storage, so a resumed study continues the sequence and never repeats a point. Categorical parameters take a
Sobol coordinate of their own; a parameter that exists only for some choices (sigma's number, when sigma is
``range``) is drawn by a random sampler seeded by the seed and the trial's number.

**Pruning.** The median pruner compares a trial's validation score after each epoch with the other trials'
at that epoch, but never at the trial's last epoch: a trial that reached it has spent its budget and is kept.

A trial of E epochs is exactly the first E epochs of a final run only under a schedule whose learning rate
does not depend on ``--epochs`` (``options.CAP_FREE_SCHEDULES``: ``constant``, ``multistep``); the tune stage
refuses the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import options
from pipeline.errors import GlossError
from pipeline.tuning.space import Param, Space, describe_space

PHASE_ATTR = "phase"  # trial user attr: GRID or OWN
GRID = "grid"
OWN = "own"
SAMPLER = "QMCSampler(sobol, scrambled) in PartialFixedSampler"


def parse_grid(text: str, option: str) -> tuple[float, ...]:
    """``"1e-5,3e-5"`` -> ``(1e-05, 3e-05)``: distinct positive numbers, or a one-line error naming ``option``."""
    values = []
    for item in str(text).split(","):
        try:
            value = float(item)
        except ValueError:
            raise GlossError(f"{option} {text}: expected a comma list of learning rates, e.g. "
                             f"{options.TUNE_LR_GRID} (got {item.strip()!r})") from None
        if not value > 0:
            raise GlossError(f"{option} {text}: learning rates must be positive (got {item.strip()})")
        if value in values:
            raise GlossError(f"{option} {text}: {item.strip()} is listed twice")
        values.append(value)
    return tuple(values)


@dataclass(frozen=True)
class Protocol:
    """A study's design: the grid parameter and values (phase 1), the own space and trials (phase 2), the seed.

    Args:
        grid_param (str): ``lr``, or ``head-lr`` at ``--train-layers 0``.
        grid (tuple): the learning rates of phase 1, in the order they run.
        own (Space): the loss's own parameters (phase 2).
        trials (int): phase 2's budget N.
        seed (int): of the Sobol sequence and of the random draws of conditional parameters.
    """

    grid_param: str
    grid: tuple[float, ...]
    own: Space
    trials: int
    seed: int = options.TUNE_SEED

    @property
    def grid_space(self) -> Param:
        return Param(self.grid_param, choices=self.grid)

    @property
    def space(self) -> Space:
        """Every parameter a trial draws: the grid parameter, then the own parameters."""
        return {self.grid_param: self.grid_space, **self.own}

    @property
    def budget(self) -> int:
        return len(self.grid) + self.trials

    def describe(self) -> dict[str, Any]:
        """What was searched, for the study's config, ``best.json`` and the manifest."""
        return {"grid": {"param": self.grid_param, "values": list(self.grid)},
                "own": {"trials": self.trials, "space": describe_space(self.own),
                        "sampler": SAMPLER, "seed": self.seed}}

    def grid_trials(self, values: dict[str, Any]) -> list[dict[str, Any]]:
        """The Optuna params of each grid trial: a grid value, the own parameters at ``values`` (the command
        line's); a one-line error when one of those lies outside its space (the grid must run it)."""
        fixed: dict[str, Any] = {}
        for name, param in self.own.items():
            if not param.holds(values[name]):
                raise GlossError(f"--{name} {values[name]}: outside its space {param.describe()}; the lr grid runs "
                                 "the command line's values, so give one the space holds (or widen --space)")
            fixed |= param.fixed(values[name])
        return [{self.grid_param: value, **fixed} for value in self.grid]


def make_protocol(loss: str, train_layers: str, own: Space, *, lr_grid: str | None, head_lr_grid: str | None,
                  trials: int, seed: int, echo=print) -> Protocol:
    """The protocol of ``loss`` at the resolved ``train_layers``, checked: the grid option that applies, an
    own space for ``trials`` >= 1."""
    if trials < 0:
        raise GlossError(f"--trials {trials}: must be at least 0 (0: the lr grid only)")
    if train_layers == "0":
        if lr_grid is not None:
            raise GlossError(f"--lr-grid {lr_grid}: --train-layers 0 trains no pre-trained weight; the adapter and "
                             "head learn at --head-lr, so give --head-lr-grid")
        grid_param, grid = options.TUNE_GRID_PARAM_ADAPTER, parse_grid(
            head_lr_grid or options.TUNE_HEAD_LR_GRID, "--head-lr-grid")
        dropped, own = grid_param in own, {name: param for name, param in own.items() if name != grid_param}
        if dropped and (own or trials == 0):
            echo(f"tune: --train-layers 0: {grid_param} is searched over --head-lr-grid; the space's {grid_param} "
                 "range is not used")
    else:
        if head_lr_grid is not None:
            raise GlossError(f"--head-lr-grid {head_lr_grid}: applies at --train-layers 0 only (here the grid is "
                             "over --lr: --lr-grid)")
        grid_param, grid = options.TUNE_GRID_PARAM, parse_grid(lr_grid or options.TUNE_LR_GRID, "--lr-grid")
    if trials > 0 and not own:
        raise GlossError(f"--loss {loss}: no parameter of its own to tune at --train-layers {train_layers} (its space "
                         f"is empty once {grid_param} is on the grid); give --trials 0 to search the grid only")
    return Protocol(grid_param, grid, own, trials, seed)


def phase_of(trial) -> str:
    """The phase of a trial (frozen or live)."""
    return trial.user_attrs.get(PHASE_ATTR, OWN)


def grid_sampler(seed: int):
    """Phase 1's trials are queued with every value fixed: a seeded random sampler for anything left."""
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def own_sampler(protocol: Protocol, best_grid_value: float, trial_number: int):
    """Phase 2's sampler for trial ``trial_number``: the scrambled Sobol sequence over the own parameters (its
    position is kept in the study), the grid parameter fixed; conditional parameters drawn at random, seeded
    by the seed and the trial number (so neither a later trial nor a resumed study draws them again)."""
    import optuna

    from pipeline.tuning.study import quiet

    with quiet():
        draws = optuna.samplers.RandomSampler(seed=protocol.seed + trial_number)
        qmc = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=protocol.seed,
                                         independent_sampler=draws, warn_independent_sampling=False)
        return optuna.samplers.PartialFixedSampler({protocol.grid_param: best_grid_value}, qmc)

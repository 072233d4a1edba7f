import optuna
import pytest

from pipeline.errors import GlossError
from pipeline.tuning.protocol import GRID, PHASE_ATTR, make_protocol, own_sampler, parse_grid
from pipeline.tuning.space import read_spaces


def test_grid_values_are_distinct_positive_numbers():
    assert parse_grid("1e-5, 3e-5,1e-4", "--lr-grid") == (1e-5, 3e-5, 1e-4)
    for text, message in (("1e-5,0", "must be positive"), ("1e-5,,2e-5", "expected a comma list"),
                          ("2e-5,2e-5", "listed twice")):
        with pytest.raises(GlossError, match=message):
            parse_grid(text, "--lr-grid")


def test_the_grid_is_over_lr_or_at_zero_layers_over_head_lr():
    ce = read_spaces()["ce"]
    encoder = make_protocol("ce", "1", ce, lr_grid="1e-5,1e-4", head_lr_grid=None, trials=3, seed=0)
    assert (encoder.grid_param, encoder.grid, list(encoder.own), encoder.budget) == ("lr", (1e-5, 1e-4), ["head-lr"], 5)
    assert encoder.grid_trials({"head-lr": 1e-3}) == [{"lr": 1e-5, "head-lr": 1e-3}, {"lr": 1e-4, "head-lr": 1e-3}]
    adapter = make_protocol("ce", "0", ce, lr_grid=None, head_lr_grid=None, trials=0, seed=0, echo=lambda _: None)
    assert (adapter.grid_param, adapter.own, adapter.budget) == ("head-lr", {}, 4)
    with pytest.raises(GlossError, match="no parameter of its own"):
        make_protocol("ce", "0", ce, lr_grid=None, head_lr_grid=None, trials=1, seed=0)


def _draw(protocol, trial) -> dict:
    return {name: param.suggest(trial) for name, param in protocol.space.items()}


def test_phase_two_draws_conditional_parameters_afresh_for_every_trial():
    """sigma's number exists only when the Sobol point picks 'range': it is drawn per trial, not repeated."""
    space = read_spaces()["gloss+ce"]
    protocol = make_protocol("gloss+ce", "1", space, lr_grid="1e-4", head_lr_grid=None, trials=8, seed=0)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(protocol.grid_trials({"sigma": "sqrt", "lambda": 0.8, "gamma": 0.6})[0],
                        user_attrs={PHASE_ATTR: GRID})
    study.optimize(lambda trial: _draw(protocol, trial) and 0.5, n_trials=1)
    drawn = []
    for _ in range(24):
        study.sampler = own_sampler(protocol, 1e-4, len(study.trials))
        trial = study.ask()
        values = _draw(protocol, trial)
        study.tell(trial, 0.5)
        assert values["lr"] == 1e-4
        drawn.append(tuple(values.values()))
    numbers = [v[1] for v in drawn if isinstance(v[1], float)]
    assert len(set(drawn)) == len(drawn) and len(numbers) > 2 and len(set(numbers)) == len(numbers)

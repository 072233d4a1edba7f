import pytest
from optuna.trial import FixedTrial

from pipeline import options
from pipeline.errors import GlossError
from pipeline.tuning.space import RANGE, Param, load_space, parse_spaces, read_spaces


def test_shipped_spaces_hold_each_losss_own_parameters_with_the_issue_ranges():
    spaces = read_spaces()
    assert set(spaces) == set(options.LOSSES) - {"triplet", "cosine"}  # lcl+ce included where it is built in
    assert all("lr" not in space for space in spaces.values())  # the grid every loss shares
    assert spaces["ce"] == {"head-lr": Param("head-lr", 1e-4, 1e-2, log=True)}
    sigma = spaces["gloss+ce"]["sigma"]
    assert (sigma.low, sigma.high, sigma.log, sigma.choices) == (0.01, 10.0, True, ("sqrt", "dicm"))
    assert spaces["gloss+ce"]["lambda"] == Param("lambda", 0.1, 0.9) == spaces["scl+ce"]["lambda"]
    assert spaces["gloss+ce"]["gamma"] == Param("gamma", 0.5, 0.9)
    assert spaces["scl+ce"]["temperature"] == Param("temperature", 0.05, 0.5)
    assert load_space("triplet") == {}  # no parameter of its own: the grid only


def test_shipped_file_skips_a_loss_not_built_in_but_a_user_file_refuses_it():
    data = {"ce": {"head-lr": {"low": 1e-5, "high": 1e-4}}, "future+ce": {"head-lr": {"low": 1e-5, "high": 1e-4}}}
    assert set(parse_spaces(data, "shipped", strict=False)) == {"ce"}
    with pytest.raises(GlossError, match=r"unknown loss \[future\+ce\]"):
        parse_spaces(data, "mine.toml")


@pytest.mark.parametrize(("table", "message"), [
    ({"ce": {"sigmaa": {"low": 0.1, "high": 1}}}, r"\[ce\] unknown parameter 'sigmaa'"),
    ({"gloss": {"sigmaa": {"low": 0.1, "high": 1}}}, "did you mean 'sigma'"),
    ({"ce": {"sigma": {"low": 0.1, "high": 1}}}, r"\[ce\] sigma: applies to gloss, gloss\+ce only"),
    ({"ce": {"lr": {"low": 1e-5, "high": 1e-4}}}, r"\[ce\] lr: the learning rate is searched over --lr-grid"),
    ({"ce": {"head-lr": {"low": 1e-4, "high": 1e-5}}}, r"empty range \[0.0001, 1e-05\]"),
    ({"ce": {"head-lr": {"low": 1e-4, "high": 1e-4}}}, "empty range"),
    ({"ce": {"head-lr": {"low": 1e-5}}}, "needs both 'low' and 'high'"),
    ({"ce": {"head-lr": {"low": 0.0, "high": 1e-4, "log": True}}}, "low 0 must be above 0"),
    ({"ce": {"head-lr": {"low": 1e-5, "high": 1e-4, "lg": True}}}, "unknown key 'lg'"),
    ({"ce": {"head-lr": {"low": 1e-5, "high": 1e-4, "log": True, "step": 1e-5}}}, "cannot go with log"),
    ({"gloss": {"gamma": {"low": 0.5, "high": 1.0}}}, "high 1 must be below 1"),
    ({"gloss": {"sigma": {"choices": ["sqrtt"]}}}, "choice sqrtt: expected one of"),
    ({"gloss": {"sigma": {"choices": []}}}, "non-empty list"),
    ({"ce": {}}, r"\[ce\] has no parameters"),
])
def test_bad_spaces_are_refused_in_one_line(table, message):
    with pytest.raises(GlossError, match=message):
        parse_spaces(table, "mine.toml")


def test_a_space_file_without_the_loss(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[ce]\nhead-lr = { low = 1e-5, high = 1e-4 }\n')
    with pytest.raises(GlossError, match=r"no \[gloss\] table \(has: ce\)"):
        load_space("gloss", path)


def test_sigma_is_a_heuristic_or_a_drawn_number():
    sigma = read_spaces()["gloss+ce"]["sigma"]
    assert sigma.suggest(FixedTrial({"sigma": "dicm"})) == "dicm"
    assert sigma.suggest(FixedTrial({"sigma": RANGE, "sigma_value": 0.37})) == 0.37
    assert sigma.fixed("sqrt") == {"sigma": "sqrt"}
    assert sigma.fixed(2.0) == {"sigma": RANGE, "sigma_value": 2.0}
    assert sigma.fixed("batch-sqrt") == {}  # not a choice: the sampler picks
    head_lr = read_spaces()["ce"]["head-lr"]
    assert head_lr.fixed(2e-3) == {"head-lr": 2e-3} and head_lr.suggest(FixedTrial({"head-lr": 3e-3})) == 3e-3
    assert sigma.holds("sqrt") and sigma.holds(0.5) and not sigma.holds("batch-sqrt") and not sigma.holds(20.0)

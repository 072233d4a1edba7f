from pipeline.compare.spec import read_spec


def test_spec_limit_and_limit_test_become_run_options(tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text('datasets = ["R8"]\nlimit = 120\nlimit_test = 54\n[[methods]]\nname = "ce"\nloss = "ce"\n')
    [run] = read_spec(spec)
    args = run.cli_args()
    assert args[args.index("--limit") + 1] == "120" and args[args.index("--limit-test") + 1] == "54"

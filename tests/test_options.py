"""One home per option: every option of `DepthSettings` reaches a run, with its own default,
through every interface (the API's signature, the CLI, a batch), so an option added in one
place and missed in another fails here."""
import inspect

import pytest

from annolid_depth import batch, cli
from annolid_depth.runner import run_video_depth_anything
from annolid_depth.settings import ALIASES, DEFAULT, FIELDS, OPTIONS, RUN_OPTIONS, DepthSettings

RUNNER_OWN = {"input_video", "output_dir", "progress_callback", "preview_callback", "frame_callback", "stage_callback",
              "should_cancel",
              "stop_event", "resume"}  # the run's own arguments, not options
TEXT_VALUES = {"device": "cpu", "checkpoint_root": "/weights", "output_dir": "/depth"}


def other_value(name: str):
    """A valid value of the option that is not its default."""
    option, kind, default = OPTIONS[name], FIELDS[name], getattr(DEFAULT, name)
    if option.choices:
        return next(value for value, _ in option.choices if value != default)
    if kind is bool:
        return not default
    if kind is str:
        return TEXT_VALUES[name]
    value = kind(default + 2 if default > 0 else 3)
    return min(value, kind(option.maximum)) if option.maximum is not None else value


OTHER = {name: other_value(name) for name in OPTIONS}


def test_the_signature_takes_every_run_option_with_its_own_default():
    parameters = inspect.signature(run_video_depth_anything).parameters
    assert set(parameters) == set(RUN_OPTIONS) | set(ALIASES) | RUNNER_OWN
    for name in RUN_OPTIONS:
        default = parameters[name].default
        if FIELDS[name] is str and default is None:  # None: the option's empty value
            continue
        if name in ALIASES.values() and default is None:  # None: take the alias (Annolid's max_len)
            assert parameters[next(a for a, n in ALIASES.items() if n == name)].default == getattr(DEFAULT, name)
            continue
        assert default == getattr(DEFAULT, name), name


def test_every_argument_of_a_call_becomes_its_option():
    arguments = {name: OTHER[name] for name in RUN_OPTIONS}
    assert DepthSettings.from_arguments(arguments) == DepthSettings(**arguments).normalized()
    assert all(getattr(DepthSettings.from_arguments(arguments), name) == OTHER[name] for name in RUN_OPTIONS)


def test_every_option_has_a_cli_flag_that_reaches_the_settings():
    argv = ["video.mp4"]
    for name in OPTIONS:
        flag, value = "--" + name.replace("_", "-"), OTHER[name]
        argv += [flag if value else "--no-" + name.replace("_", "-")] if FIELDS[name] is bool else [flag, str(value)]
    args = cli.build_parser(DEFAULT).parse_args(argv)
    assert {name: getattr(args, name) for name in OPTIONS} == OTHER


def test_a_batch_takes_the_same_keywords_and_refuses_unknown_ones():
    arguments = {name: OTHER[name] for name in RUN_OPTIONS}
    assert batch.batch_settings(arguments) == DepthSettings.from_arguments(arguments)
    with pytest.raises(TypeError, match="unexpected keyword arguments: encodr"):
        batch.run_many([], encodr="vitb")

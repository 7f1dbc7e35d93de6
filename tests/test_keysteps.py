"""The Key Step Table follows the paper exactly; ESD's table is uniform over all steps."""
import pytest

from kscu.config import UnlearnConfig
from kscu.domain import build_domain
from kscu.keysteps import PAPER_PRESETS, key_step_table, scale_start, table_summary, uniform_table

SD1, DEMO = build_domain("sd1"), build_domain("demo")


def test_window_runs_from_start_to_last_step_in_order():
    table = key_step_table(60, start=24, num_steps=50)
    assert table[:26] == list(range(24, 50))
    assert table[26:52] == list(range(24, 50))


def test_start_moves_one_step_after_every_eight_passes():
    table = key_step_table(8 * 26 + 25 + 1, start=24, num_steps=50)
    assert table[: 8 * 26] == list(range(24, 50)) * 8
    assert table[8 * 26 : 8 * 26 + 25] == list(range(25, 50))
    assert table[-1] == 25  # the ninth pass is over: the next window starts again at 25


def test_start_stays_below_ninety_percent_of_the_schedule():
    table = key_step_table(5000, start=40, num_steps=50)
    assert min(table[-50:]) == 44  # 0.9 * 50 = 45: S may reach 44, never 45
    assert all(k < 50 for k in table)


def test_table_has_exactly_the_requested_length_and_ends_early_when_asked():
    assert len(key_step_table(500, 24)) == 500
    early = key_step_table(100, start=0, num_steps=50, end=15)
    assert max(early) == 14 and min(early) == 0


@pytest.mark.parametrize("start", [-1, 45, 50])
def test_bad_start_is_refused_with_the_allowed_range(start):
    with pytest.raises(ValueError, match="0..44"):
        key_step_table(10, start)


def test_uniform_table_covers_all_steps_and_is_seeded():
    table = uniform_table(1000, 50, seed=3)
    assert table == uniform_table(1000, 50, seed=3)
    assert set(table) == set(range(50))


def test_paper_presets_match_the_method():
    assert {k: (p.iterations, p.start_of_50, p.params) for k, p in PAPER_PRESETS.items()} == {
        "nudity": (750, 14, "noxattn"), "object": (750, 14, "noxattn"),
        "style": (500, 24, "xattn"), "instance": (200, 40, "xattn"),
    }
    assert SD1.presets() is PAPER_PRESETS
    assert scale_start(24, 25) == 12


def test_summary_reports_share_of_steps_trained():
    summary = table_summary(key_step_table(500, 24), 50)
    assert summary["distinct_steps"] == 26 and summary["share_of_steps"] == pytest.approx(0.52)


def test_config_resolves_presets_per_family_and_method():
    kscu = UnlearnConfig("striped", kind="style").resolve(SD1)
    assert (kscu.iterations, kscu.start_step, kscu.params, kscu.lr) == (500, 24, "xattn", 1e-5)
    esd = UnlearnConfig("striped", kind="style", method="esd").resolve(SD1)
    assert (esd.iterations, esd.start_step, esd.lambda2) == (1000, 0, 0.0)
    with pytest.raises(ValueError, match="kind.*colourful. has no preset"):
        UnlearnConfig("x", kind="colourful").resolve(SD1)
    with pytest.raises(ValueError, match="kscu or esd"):
        UnlearnConfig("x", method="sgd").resolve(SD1)


def test_demo_style_preset_keeps_the_look_alike_styles_unless_told_otherwise():
    style = UnlearnConfig("Striped", kind="style").resolve(DEMO)
    assert (style.preserve, style.preserve_weight) == (("dotted", "checkered"), 6.0)
    assert UnlearnConfig("outlined", kind="style").resolve(DEMO).preserve == ()
    assert UnlearnConfig("striped", kind="style", preserve=()).resolve(DEMO).preserve == ()
    assert UnlearnConfig("striped", kind="style", preserve=("plain",), preserve_weight=2.0).resolve(DEMO).preserve == ("plain",)
    assert UnlearnConfig("star", kind="object").resolve(DEMO).preserve == ()
    assert UnlearnConfig("striped", kind="style").resolve(SD1).preserve == ()
    # a resolved config survives its JSON round trip; an unresolved one keeps "the preset's"
    assert UnlearnConfig.from_dict(style.to_dict()) == style
    assert UnlearnConfig.from_dict(UnlearnConfig("striped").to_dict()).preserve is None


def test_demo_colour_preset_keeps_the_colours_mixed_from_or_into_it():
    red = UnlearnConfig("red").resolve(DEMO)
    assert (red.preserve, red.preserve_weight) == (("purple", "blue"), 6.0)
    assert UnlearnConfig("purple").resolve(DEMO).preserve == ("red", "blue")
    assert UnlearnConfig("red", preserve=()).resolve(DEMO).preserve == ()
    red_and_purple = UnlearnConfig("red", also=("purple",)).parts(DEMO)
    assert [part.preserve for part in red_and_purple] == [("blue",), ("blue",)], "no concept keeps another the job erases"
    assert UnlearnConfig.from_dict(red.to_dict()) == red


def test_demo_presets_map_a_concept_to_a_substitute_unless_told_otherwise():
    assert UnlearnConfig("Striped", kind="style").resolve(DEMO).anchor == "plain"
    assert UnlearnConfig("outlined", kind="style").resolve(DEMO).anchor == "plain"
    assert UnlearnConfig("plain", kind="style").resolve(DEMO).anchor == "", "plain has no plain substitute"
    assert UnlearnConfig("striped", kind="style", anchor="").resolve(DEMO).anchor == ""
    assert UnlearnConfig("striped", kind="style", anchor=" dotted ").resolve(DEMO).anchor == "dotted"
    assert UnlearnConfig("star", kind="object").resolve(DEMO).anchor == "square"
    assert UnlearnConfig("square").resolve(DEMO).anchor == "circle", "a square becomes the next substitute"
    assert UnlearnConfig("star", anchor="").resolve(DEMO).anchor == "", "empty: the sentence without the shape"
    assert UnlearnConfig("dark").resolve(DEMO).anchor == "grey" and UnlearnConfig("grey").resolve(DEMO).anchor == "light"
    assert UnlearnConfig("dark", also=("grey",)).parts(DEMO)[0].anchor == "light", "not a background the job erases"
    assert UnlearnConfig("red").resolve(DEMO).anchor == "yellow" and UnlearnConfig("yellow").resolve(DEMO).anchor == "red"
    assert UnlearnConfig("green").resolve(DEMO).anchor == "red", "never a look-alike the preset keeps (yellow)"
    assert UnlearnConfig("blue").resolve(DEMO).anchor == "", "every other colour is blue's look-alike"
    assert UnlearnConfig("striped", kind="style").resolve(SD1).anchor == "", "SD1.x keeps the paper's empty anchor"


def test_the_kind_is_inferred_by_the_domain_or_asked_for():
    assert UnlearnConfig("star").resolve(DEMO).kind == "object", "not the style preset"
    assert UnlearnConfig("red").resolve(DEMO).kind == "colour"
    assert UnlearnConfig("Van Gogh").resolve(SD1).kind == "style"
    assert UnlearnConfig("church").resolve(SD1).kind == "object"
    assert UnlearnConfig("nudity").resolve(SD1).kind == "nudity"
    with pytest.raises(ValueError, match="kind of 'a blue kite' cannot be told") as caught:
        UnlearnConfig("a blue kite").resolve(SD1)
    assert caught.value.field == "kind"
    assert UnlearnConfig("a blue kite", kind="object").resolve(SD1).iterations == 750

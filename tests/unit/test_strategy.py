import pytest

from bot.strategy import DEFAULT_STRATEGY, Level, Strategy, StrategyError, apply_one_line, parse_ladder


def test_defaults_for_a_new_user() -> None:
    s = DEFAULT_STRATEGY.validated()
    assert (s.take_profit_pct, s.stop_loss_pct, s.deadline_s, s.trailing_stop_pct) == (6.0, 10.0, 45, 0.0)
    assert s.to_wire() == {"target_profit_pct": 6.0, "stop_loss_pct": 10.0}


def test_one_line_form_sets_every_field() -> None:
    s = apply_one_line(DEFAULT_STRATEGY, "tp 25 sl 10 trail 5 deadline 120 graduation on guard off breakeven 3".split())
    assert s.take_profit_pct == 25 and s.stop_loss_pct == 10 and s.trailing_stop_pct == 5
    assert s.deadline_s == 120 and s.sell_on_graduation and not s.liquidity_guard and s.breakeven_trail_pct == 3
    wire = s.to_wire()
    assert wire["trailing_stop_pct"] == 5 and wire["sell_on_graduation"] is True and wire["breakeven_trail_pct"] == 3
    assert "deadline" not in str(wire)  # the deadline runs on the bot


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ("tp 0.0 sl 0 trail 0".split(), "no exit condition"),
        (["tp", "nan"], "not a finite number"),
        (["tp", "inf"], "not a finite number"),
        (["tp", "20000"], "take profit (tp) 20000% is out of range: use more than 0 and at most 10000"),
        (["sl", "150"], "stop loss (sl) 150% is out of range: use more than 0 and at most 100"),
        (["sl", "-5"], "stop loss (sl) -5% is out of range"),
        (["deadline", "90000"], "deadline 90000 is out of range: use 0 (off) to 86400 seconds"),
        (["deadline", "1.5"], "whole seconds"),
        (["graduation", "maybe"], "graduation 'maybe' must be on or off"),
        (["speed", "9"], "unknown setting 'speed'"),
        (["tp"], "'tp' needs a value"),
        (["tp", "abc"], "tp 'abc' is not a number"),
    ],
)
def test_bad_values_name_the_field_value_and_range(args: list[str], words: str) -> None:
    with pytest.raises(StrategyError) as info:
        apply_one_line(DEFAULT_STRATEGY, args)
    assert words in str(info.value)


def test_ladder_parses_and_validates() -> None:
    s = parse_ladder(DEFAULT_STRATEGY, ["25:30", "50:50", "100:20:5"])
    assert s.ladder == (Level(25, 30), Level(50, 50), Level(100, 20, 5))
    assert s.to_wire()["take_profit_levels"][2] == {"profit_pct": 100, "sell_pct": 20, "trailing_stop_pct": 5}
    assert parse_ladder(s, ["off"]).ladder == ()
    with pytest.raises(StrategyError, match="must be higher than the level before"):
        parse_ladder(DEFAULT_STRATEGY, ["50:30", "25:50"])
    with pytest.raises(StrategyError, match="add up to 130%: they may add up to at most 100%"):
        parse_ladder(DEFAULT_STRATEGY, ["25:80", "50:50"])
    with pytest.raises(StrategyError, match="is not profit%:sell%"):
        parse_ladder(DEFAULT_STRATEGY, ["25-30"])


def test_json_round_trip_and_description() -> None:
    s = parse_ladder(apply_one_line(DEFAULT_STRATEGY, ["trail", "5"]), ["25:30", "50:70"])
    assert Strategy.from_json(s.to_json()) == s
    text = "\n".join(s.describe())
    assert "at +25% sell 30%" in text and "Trailing stop: 5% below the peak" in text and "Deadline: 45 s" in text

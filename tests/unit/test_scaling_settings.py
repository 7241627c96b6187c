"""The scale settings: defaults, per-queue overrides, and bad values that stop start-up in one line."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings, scale_values
from workers.scaling.limits import ScaleLimits, limits_for


def test_the_defaults_are_the_design_defaults_for_every_queue() -> None:
    """Above 1,000 due add 2, below 100 remove 1; 1 to 8 workers; no latency target."""
    settings = load_settings({})
    assert limits_for(settings, "orders") == ScaleLimits(
        min_workers=1,
        max_workers=8,
        up_above=1000,
        down_below=100,
        step_up=2,
        step_down=1,
        cooldown=60.0,
        window=300.0,
        target_latency=None,
    )
    assert limits_for(settings, "payments") == limits_for(settings, "orders")


def test_a_queue_entry_overrides_only_what_it_names() -> None:
    """PLATFORM_SCALE_QUEUES="orders:min=2,max=20;email:max=4": orders gets 2..20,
    email gets 1..4, payments keeps the globals (here max 6)."""
    settings = load_settings(
        {"PLATFORM_SCALE_MAX": "6", "PLATFORM_SCALE_QUEUES": " orders:min=2, max=20 ; email:max=4 ;"}
    )
    assert (limits_for(settings, "orders").min_workers, limits_for(settings, "orders").max_workers) == (2, 20)
    assert (limits_for(settings, "email").min_workers, limits_for(settings, "email").max_workers) == (1, 4)
    assert limits_for(settings, "payments").max_workers == 6
    assert scale_values(settings)["scale_max"] == 6


def test_every_key_of_a_queue_entry_reaches_the_limits() -> None:
    settings = load_settings(
        {
            "PLATFORM_SCALE_QUEUES": "orders:min=0,max=3,up_above=50,down_below=5,step_up=3,step_down=2,"
            "cooldown=10,window=30,target_latency=2.5"
        }
    )
    assert limits_for(settings, "orders") == ScaleLimits(0, 3, 50, 5, 3, 2, 10.0, 30.0, 2.5)


def test_a_subscriber_queue_may_have_an_entry() -> None:
    """Subscriber queues (<service>.events) come from the subscriptions file, so their names are
    only checked for shape."""
    settings = load_settings({"PLATFORM_SCALE_QUEUES": "billing.events:max=2"})
    assert limits_for(settings, "billing.events").max_workers == 2


def test_a_latency_target_of_zero_is_off() -> None:
    assert limits_for(load_settings({"PLATFORM_SCALE_TARGET_LATENCY": "0"}), "orders").target_latency is None
    assert limits_for(load_settings({"PLATFORM_SCALE_TARGET_LATENCY": "5"}), "orders").target_latency == 5.0


#: (environment, the one line start-up stops with)
REFUSED = [
    (
        {"PLATFORM_SCALE_MIN": "5", "PLATFORM_SCALE_MAX": "2"},
        "PLATFORM_SCALE_MIN (5) must not be above PLATFORM_SCALE_MAX (2)",
    ),
    (
        {"PLATFORM_SCALE_MIN": "9"},
        "PLATFORM_SCALE_MIN (9) must not be above PLATFORM_SCALE_MAX (8)",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:min=10"},
        "PLATFORM_SCALE_QUEUES orders:min (10) must not be above PLATFORM_SCALE_MAX (8)",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:min=3,max=2"},
        "PLATFORM_SCALE_QUEUES orders:min (3) must not be above PLATFORM_SCALE_QUEUES orders:max (2)",
    ),
    ({"PLATFORM_SCALE_COOLDOWN": "-1"}, "PLATFORM_SCALE_COOLDOWN must be at least 0.0, got '-1'"),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:cooldown=-5"},
        "PLATFORM_SCALE_QUEUES orders:cooldown must be at least 0.0, got '-5'",
    ),
    ({"PLATFORM_SCALE_WINDOW": "-30"}, "PLATFORM_SCALE_WINDOW must be at least 0.0, got '-30'"),
    (
        {"PLATFORM_SCALE_DOWN_BELOW": "1000"},
        "PLATFORM_SCALE_DOWN_BELOW (1000) must be below PLATFORM_SCALE_UP_ABOVE (1000)",
    ),
    (
        {"PLATFORM_SCALE_UP_ABOVE": "50"},
        "PLATFORM_SCALE_DOWN_BELOW (100) must be below PLATFORM_SCALE_UP_ABOVE (50)",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:down_below=2000"},
        "PLATFORM_SCALE_QUEUES orders:down_below (2000) must be below PLATFORM_SCALE_UP_ABOVE (1000)",
    ),
    ({"PLATFORM_SCALE_MAX": "0"}, "PLATFORM_SCALE_MAX must be at least 1, got '0'"),
    ({"PLATFORM_SCALE_STEP_UP": "0"}, "PLATFORM_SCALE_STEP_UP must be at least 1, got '0'"),
    ({"PLATFORM_SCALE_STEP_DOWN": "0"}, "PLATFORM_SCALE_STEP_DOWN must be at least 1, got '0'"),
    ({"PLATFORM_SCALE_UP_ABOVE": "0"}, "PLATFORM_SCALE_UP_ABOVE must be at least 1, got '0'"),
    ({"PLATFORM_SCALE_TARGET_LATENCY": "-1"}, "PLATFORM_SCALE_TARGET_LATENCY must be at least 0.0, got '-1'"),
    ({"PLATFORM_SCALE_MIN": "1.5"}, "PLATFORM_SCALE_MIN must be a number, got '1.5'"),
    (
        {"PLATFORM_SCALE_QUEUES": "orders"},
        "PLATFORM_SCALE_QUEUES: 'orders' is not queue:key=value[,key=value] (e.g. orders:min=1,max=20)",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "Orders:max=3"},
        "PLATFORM_SCALE_QUEUES: 'Orders:max=3' is not queue:key=value[,key=value] (e.g. orders:min=1,max=20)",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:"},
        "PLATFORM_SCALE_QUEUES: orders sets nothing (e.g. orders:min=1,max=20)",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:mxa=3"},
        "PLATFORM_SCALE_QUEUES: orders: 'mxa=3' is not key=value with a key of "
        "min, max, up_above, down_below, step_up, step_down, cooldown, window, target_latency",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:max"},
        "PLATFORM_SCALE_QUEUES: orders: 'max' is not key=value with a key of "
        "min, max, up_above, down_below, step_up, step_down, cooldown, window, target_latency",
    ),
    ({"PLATFORM_SCALE_QUEUES": "orders:max=x"}, "PLATFORM_SCALE_QUEUES orders:max must be a number, got 'x'"),
    ({"PLATFORM_SCALE_QUEUES": "orders:max=3,max=4"}, "PLATFORM_SCALE_QUEUES: orders sets max twice"),
    (
        {"PLATFORM_SCALE_QUEUES": "orders:max=3;orders:min=2"},
        "PLATFORM_SCALE_QUEUES names queue 'orders' twice",
    ),
    (
        {"PLATFORM_SCALE_QUEUES": "ordres:max=3"},
        "PLATFORM_SCALE_QUEUES: 'ordres' is not a queue of PLATFORM_QUEUES or PLATFORM_DEFAULT_QUEUE",
    ),
]


@pytest.mark.parametrize(("environ", "line"), REFUSED, ids=[line for _, line in REFUSED])
def test_a_bad_scale_setting_stops_start_up_with_one_line_naming_the_variable(environ, line) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ)
    assert str(refused.value) == line
    assert "\n" not in str(refused.value)


def test_the_default_queue_may_have_an_entry() -> None:
    assert limits_for(load_settings({"PLATFORM_SCALE_QUEUES": "default:max=1"}), "default").max_workers == 1

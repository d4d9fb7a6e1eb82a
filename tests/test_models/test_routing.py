"""Routing by stage x cell x the model's band, and sales' decisions standing: tables of cases with exact actions."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from leadscore.features.context import FeatureParams
from leadscore.features.spine import scoring_spine
from leadscore.models.grade_rules import CELLS, STAGES, Action, BandCutoffs, BandRules, GradeRules, RoutingRules
from leadscore.models.grades import grade_spine
from leadscore.models.routing import assign_actions, keep_rejections, priority_band, routing_markdown

RULES = RoutingRules()
CUT = BandCutoffs(hot=0.34, cold=0.017, base_rate=0.17)
AS_OF = pd.Timestamp("2025-06-02 09:00", tz="UTC")


def expected_route(stage: str, cell: str, band: str | None, dormant: bool) -> tuple[str, float | None]:
    """The default table, written out independently of its implementation: stage x cell as before, then the band."""
    if band == "hot":  # never nurtured or recycled: a sales call within the tightest SLA
        return "sales call", 24
    sales_cell = stage != "IQL" and not (dormant and stage != "SQL")  # dormant MQL/PQL leads are recycled
    if sales_cell and cell in ("A1", "B1"):
        rules = ("sales call", 24)
    elif (sales_cell and cell in ("A2", "A3", "B2", "B3")) or stage == "SQL":  # SQL: never nurtured or recycled
        rules = ("sales follow-up", 48)
    else:
        rules = ("recycle", None) if dormant else ("nurture", None)
    if band == "cold" and rules[1] is not None:  # rules say sales, model says unlikely
        return "review", None
    return rules


@pytest.mark.parametrize("dormant", [False, True])
@pytest.mark.parametrize("band", ["hot", "warm", "cold", None])
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_cell_and_band_routes_as_the_table_says(stage, band, dormant):
    n = len(CELLS)
    result = assign_actions(
        pd.Series(CELLS),
        pd.Series([AS_OF] * n),
        RULES,
        stages=pd.Series([stage] * n),
        dormant=pd.Series([dormant] * n),
        bands=pd.Series([band] * n, dtype="string"),
        cutoffs=CUT,
    )
    for cell, (_, row) in zip(CELLS, result.iterrows(), strict=True):
        action, hours = expected_route(stage, cell, band, dormant)
        assert (row["action"], row["sla_hours"] if hours else None) == (action, hours), (stage, cell, band, dormant)
        if hours is None:
            assert pd.isna(row["due_by"]) and pd.isna(row["due_by_local"])
        else:
            assert row["due_by"] == AS_OF + pd.Timedelta(hours=hours)
    if band == "hot":
        assert not result["action"].isin(["nurture", "recycle"]).any()


def test_the_row_says_when_the_band_changed_the_route():
    cells = pd.Series(["C1", "A2", "A2", "D4", "C3", "C3"])
    result = assign_actions(
        cells,
        pd.Series([AS_OF] * 6),
        RULES,
        stages=pd.Series(["MQL", "MQL", "MQL", "SQL", "SQL", "SQL"]),
        dormant=pd.Series([False] * 6),
        bands=pd.Series(["hot", "cold", "warm", "cold", "cold", "hot"], dtype="string"),
        accepted=pd.Series([False, False, False, False, True, True]),
        cutoffs=CUT,
    )
    assert result["action"].tolist() == [
        "sales call",
        "review",
        "sales follow-up",
        "review",
        "sales follow-up",
        "sales call",
    ]
    assert result["route_note"].tolist() == [
        "model says hot (p >= 34.0%): the rules alone say nurture",
        "rules say MQL A2: sales follow-up, 48 h, model says unlikely (p < 1.70%)",
        pd.NA,
        "rules say SQL D4: sales follow-up, 48 h, model says unlikely (p < 1.70%)",
        # sales accepted the lead: its decision stands, whatever the band
        "accepted by sales: stays with sales though the model says unlikely (p < 1.70%)",
        "model says hot (p >= 34.0%): the rules alone say sales follow-up, 48 h",  # still with sales, sooner
    ]


def test_without_a_model_the_table_is_stage_by_cell_alone():
    cells = pd.Series(list(CELLS) * len(STAGES))
    stages = pd.Series([s for s in STAGES for _ in CELLS])
    as_of = pd.Series([AS_OF] * len(cells))
    plain = assign_actions(cells, as_of, RULES, stages=stages)
    warm = assign_actions(cells, as_of, RULES, stages=stages, bands=pd.Series(["warm"] * len(cells), dtype="string"))
    pd.testing.assert_frame_equal(plain, warm)
    assert plain["route_note"].isna().all()


@pytest.mark.parametrize(
    ("p", "band"), [(0.9, "hot"), (0.34, "hot"), (0.3399, "warm"), (0.017, "warm"), (0.0169, "cold"), (np.nan, None)]
)
def test_band_cutoffs_hot_from_its_cutoff_cold_below_its_cutoff(p, band):
    got = priority_band(pd.Series([p]), CUT).iloc[0]
    assert (pd.isna(got) and band is None) or got == band


def test_band_cutoffs_are_lifts_over_the_base_rate_of_new_leads():
    cut = BandRules(hot_lift=2, cold_lift=0.1).cutoffs(0.17)
    assert (cut.hot, cut.cold, cut.base_rate) == pytest.approx((0.34, 0.017, 0.17))
    with pytest.raises(ValidationError, match="cold_lift .* must be below hot_lift"):
        BandRules(hot_lift=0.5, cold_lift=0.5)


def test_a_cell_and_band_entry_outranks_the_band_and_the_band_outranks_the_cell():
    table = {s: dict(RULES.table[s]) for s in STAGES}
    table["MQL"]["C1/hot"] = {"action": "inside sales call", "sla_hours": 4}
    rules = RoutingRules.model_validate({"table": table})
    assert rules.route("MQL", "C1", band="hot").action == "inside sales call"
    assert rules.route("MQL", "C2", band="hot").action == "sales call"  # "*/hot" outranks "*" and "C2"
    assert rules.route("MQL", "A2", band="cold").action == "review"  # "A2/cold" outranks "A2"
    assert rules.route("MQL", "A2").action == "sales follow-up"  # no band: band entries never apply
    assert rules.route("IQL", "A1", dormant=True, band="hot").action == "sales call"  # "dormant/hot" before "dormant"


@pytest.mark.parametrize("key", ["A1/lukewarm", "A1/", "E1/hot", "hot"])
def test_a_table_key_is_a_cell_star_or_dormant_with_an_optional_band(key):
    table = {s: {"*": {"action": "nurture"}} for s in STAGES}
    table["MQL"][key] = {"action": "call"}
    with pytest.raises(ValidationError, match=r"unknown key\(s\)"):
        RoutingRules.model_validate({"table": table})


def test_new_activity_events_must_be_known_event_types():
    with pytest.raises(ValidationError, match=r"unknown event type\(s\) \['webinar'\]"):
        RoutingRules(new_activity_events=["demo_request", "webinar"])


def test_the_routing_page_and_the_readme_print_the_default_table():
    from tests.conftest import REPO

    table = routing_markdown(RoutingRules())
    assert table in (REPO / "docs" / "routing.md").read_text()
    assert table in (REPO / "README.md").read_text()
    assert table.splitlines()[2] == (
        "| hot | any | sales call, 24 h | sales call, 24 h | sales call, 24 h | sales call, 24 h |"
    )


# -- sales' decisions --------------------------------------------------------------------------------------------
def _actions(n: int, *, sla: float | None = 48.0) -> pd.DataFrame:
    due = AS_OF + pd.Timedelta(hours=sla) if sla else pd.NaT
    return pd.DataFrame(
        {
            "action": pd.Series(["sales follow-up" if sla else "nurture"] * n, dtype="string"),
            "sla_hours": [sla if sla else np.nan] * n,
            "due_by": pd.Series([due] * n, dtype="datetime64[ns, UTC]"),
            "due_by_local": pd.Series(["2025-06-04 09:00 UTC" if sla else None] * n, dtype="string"),
            "route_note": pd.Series([None, "model says hot (p >= 34.0%): the rules alone say nurture", None][:n]),
        }
    )


def test_a_rejection_stands_until_new_activity_and_the_row_says_so():
    rejections = pd.DataFrame(
        {
            "rejected_at": pd.to_datetime(["2025-05-20", "2025-05-20", None], utc=True),
            "rejection_reason": pd.Series(["no response", None, None], dtype="string"),
            "new_activity": pd.Series([None, "demo_request", None], dtype="string"),
            "new_activity_at": pd.to_datetime([None, "2025-05-28 10:00", None], utc=True),
        }
    )
    out = keep_rejections(_actions(3), rejections, rejected_action="nurture")
    assert out["action"].tolist() == ["nurture", "sales follow-up", "sales follow-up"]
    assert np.isnan(out["sla_hours"].iloc[0]) and out["sla_hours"].iloc[1:].tolist() == [48.0, 48.0]
    assert pd.isna(out["due_by"].iloc[0]) and pd.isna(out["due_by_local"].iloc[0]) and out["due_by"].notna()[1:].all()
    assert out["route_note"].tolist() == [
        "rejected by sales on 2025-05-20: no response; kept from sales until new activity",
        "rejected by sales on 2025-05-20: no reason given; new activity since: demo_request on 2025-05-28; "
        "model says hot (p >= 34.0%): the rules alone say nurture",
        pd.NA,
    ]


UTC = "UTC"


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def test_rejected_leads_with_and_without_later_activity_through_the_grades():
    """Four sales-qualified leads (fit B, three BANT answers): rejected and quiet since (only an e-mail opened and
    sales' own call), rejected and back with a demo request, rejected then accepted, never rejected."""
    ids = ["quiet", "back", "accepted_since", "never"]
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": [_t("2025-11-01")] * 4,
            "email": ["x@acme.com"] * 4,
            "email_domain_type": ["business"] * 4,
            "seniority": ["c_level"] * 4,
            "country": ["US"] * 4,
            "bant_budget": ["yes"] * 4,
            "bant_authority": ["decision_maker"] * 4,
            "bant_need": ["high"] * 4,
            "sales_accepted_at": [pd.NaT, pd.NaT, _t("2025-12-20"), pd.NaT],
            "sales_rejected_at": [_t("2025-12-10"), _t("2025-12-10"), _t("2025-12-05"), pd.NaT],
            "rejection_reason": ["no response", "bad timing", "no budget", None],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": ["quiet", "quiet", "quiet", "quiet", "back", "back"],
            "occurred_at": [
                _t("2025-12-09"),
                _t("2025-12-20"),
                _t("2025-12-21"),
                _t("2026-01-02"),  # after the as-of: not known yet
                _t("2025-12-09"),
                _t("2025-12-15 10:00"),
            ],
            "event_type": [
                "demo_request",
                "email_open",
                "sales_call",
                "demo_request",
                "pricing_page_view",
                "demo_request",
            ],
        }
    )
    empty_time = pd.Series(dtype="datetime64[ns, UTC]")
    opportunities = pd.DataFrame(
        {"opportunity_id": pd.Series(dtype=str), "lead_id": pd.Series(dtype=str), "created_at": empty_time}
        | {"closed_at": empty_time, "status": pd.Series(dtype=str), "amount": pd.Series(dtype=float)}
    )
    spine = scoring_spine(leads, opportunities, as_of=_t("2025-12-31"))
    tables = {"leads": leads, "events": events, "opportunities": opportunities}
    graded = grade_spine(spine, tables, GradeRules(), FeatureParams()).set_index("lead_id")
    assert graded["stage"].tolist() == ["SQL"] * 4 and graded["cell"].str[0].tolist() == ["B"] * 4
    assert graded["action"].tolist() == ["nurture", "sales follow-up", "sales follow-up", "sales follow-up"]
    assert graded["sla_hours"].fillna(0).tolist() == [0, 48, 48, 48]
    assert graded["route_note"].tolist() == [
        "rejected by sales on 2025-12-10: no response; kept from sales until new activity",
        "rejected by sales on 2025-12-10: bad timing; new activity since: demo_request on 2025-12-15",
        pd.NA,
        pd.NA,
    ]


def test_the_documented_example_changes_one_row_and_keeps_the_others():
    import re
    import tomllib

    from tests.conftest import REPO

    page = (REPO / "docs" / "routing.md").read_text()
    example = re.search(r"```toml\n(.*?)```", page, re.S).group(1)
    rules = RoutingRules.model_validate(tomllib.loads(example)["grades"]["routing"])
    assert rules.route("MQL", "C1", band="hot") == Action(action="inside sales call", sla_hours=4)
    assert rules.route("MQL", "C2", band="hot").action == "sales call"
    assert rules.table["SQL"] == RULES.table["SQL"] and rules.table["IQL"] == RULES.table["IQL"]

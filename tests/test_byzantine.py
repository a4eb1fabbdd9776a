"""The Byzantine benchmark as a specification: what the defended defaults withstand, where the
undefended mean breaks, and the documented trade-offs (a coalition at or above the default policy's
bar gets its experience in; colluders can ride on honest clusters), on a smaller simulated network of
real texts and real embeddings (seeded: the same figures on every run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dso.bench import byzantine
from dso.bench.byzantine import (
    ACCEPTANCE_ATTACKS,
    AGGREGATORS,
    CODE_ATTACKS,
    FRACTIONS,
    Config,
    attack_codes,
    build_network,
    malicious_count,
    node_codes,
    simulate,
    unanimous_bits_flipped,
)

ROOT = Path(__file__).resolve().parent.parent
SMALL = Config(gsm8k_experiences=6, sts_experiences=6, flood_variants=20, sybils_per_attacker=5, seed=11)
KEYS = [f"{f:.2f}" for f in FRACTIONS]
LOW = KEYS[:2]  # 10 % and 20 %, the fractions at or below the aggregators' assumed quarter


@pytest.fixture(scope="module")
def small() -> dict:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads((ROOT / "bench" / "results" / "byzantine.json").read_text())


def cosine(results: dict, attack: str, fraction: str, aggregator: str) -> float:
    return results["code_attacks"][attack][fraction][aggregator]["cosine"]


def acceptance(results: dict, attack: str, policy: str, fraction: str) -> dict:
    return results["acceptance"][attack][policy][fraction]


# -- codes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", CODE_ATTACKS)
def test_median_and_majority_stay_within_cosine_0_95_of_honest_at_10_percent(small, attack):
    for aggregator in ("median", "majority"):
        assert cosine(small, attack, "0.10", aggregator) >= 0.95, (attack, aggregator)


@pytest.mark.parametrize("attack", CODE_ATTACKS)
def test_geometric_median_stays_within_cosine_0_93_of_honest_up_to_a_third(small, attack):
    for fraction in KEYS[:3]:
        assert cosine(small, attack, fraction, "geometric_median") >= 0.93, fraction


def test_median_geometric_median_and_majority_shrug_off_gaussian_noise_that_breaks_the_mean(small):
    for fraction in KEYS:
        robust = [cosine(small, "gaussian", fraction, a) for a in ("median", "geometric_median", "majority")]
        assert min(robust) > cosine(small, "gaussian", fraction, "mean") + 0.4, fraction
        if fraction != "0.45":
            assert min(robust) >= 0.95, fraction


def test_mean_breaks_under_gaussian_noise_and_ipm_at_every_fraction(small):
    for fraction in KEYS:
        assert cosine(small, "gaussian", fraction, "mean") < 0.6, fraction
    assert cosine(small, "ipm-10", "0.10", "mean") < 0.2
    for fraction in KEYS[1:]:
        assert cosine(small, "ipm-10", fraction, "mean") < 0, fraction


def test_mean_breaks_under_sign_flip_near_half(small):
    assert cosine(small, "sign-flip", "0.45", "mean") < 0.9 < cosine(small, "sign-flip", "0.45", "geometric_median")


def test_per_bit_majority_flips_no_bit_all_honest_nodes_agree_on(small):
    for attack in CODE_ATTACKS:
        for fraction in KEYS:
            assert small["code_attacks"][attack][fraction]["majority"]["unanimous_bits_flipped"] == 0, (attack, fraction)


def test_unanimous_bit_check_catches_a_majority_of_attackers():
    # The invariant above is not vacuous: with more attackers than honest nodes it fails.
    net = build_network(Config(gsm8k_experiences=1, sts_experiences=0, flood_variants=1, sybils_per_attacker=1, seed=11))
    honest = node_codes(net, [0, 1, 2], 0)
    attackers = attack_codes("ipm-0.1", honest, node_codes(net, [3, 4, 5, 6], 0), net.codec, 7, np.random.default_rng(0))
    assert unanimous_bits_flipped(honest, np.vstack([honest, attackers])) > 0


def test_trimmed_mean_and_multi_krum_hold_within_their_assumed_quarter_and_break_beyond(small):
    for aggregator in ("trimmed_mean", "multi_krum"):
        for fraction in LOW:
            assert cosine(small, "gaussian", fraction, aggregator) >= 0.95, (aggregator, fraction)
        assert cosine(small, "gaussian", "0.45", aggregator) < 0.6, aggregator


# -- acceptance and confidence ----------------------------------------------------------------------


@pytest.mark.parametrize("attack", ["flooding", "sybil"])
def test_flooding_and_sybils_get_nothing_in_and_cost_nothing_under_the_default_policy(small, attack):
    for fraction in KEYS:
        cell = acceptance(small, attack, "default", fraction)
        assert (cell["attacker_only_accepted"], cell["honest_lost"], cell["hijacked"]) == (0, 0, 0), fraction


def test_sybil_reports_are_all_dropped(small):
    for fraction in KEYS:
        attackers = malicious_count(float(fraction), SMALL.nodes)
        sybil_reports = attackers * SMALL.sybils_per_attacker * (1 + small["experiences"]["total"])
        assert acceptance(small, "sybil", "default", fraction)["dropped_reports"] == sybil_reports


def test_strict_policy_stops_every_coalition_below_half(small):
    for fraction in KEYS:
        assert acceptance(small, "collusion", "strict", fraction)["attacker_only_accepted"] == 0, fraction


def test_default_policy_accepts_a_coalition_of_three_or_more_colluders(small):
    # The documented trade-off (AcceptancePolicy CAUTION): 3 admitted colluders meet the default bar.
    assert malicious_count(0.10, SMALL.nodes) == 2
    assert acceptance(small, "collusion", "default", "0.10")["attacker_only_accepted"] == 0
    for fraction in KEYS[1:]:
        assert acceptance(small, "collusion", "default", fraction)["attacker_only_accepted"] >= SMALL.collusion_junk, fraction


def test_strict_policy_costs_liveness_even_without_attack(small):
    for fraction in KEYS:
        default = acceptance(small, "no attack", "default", fraction)["honest_accepted"]
        assert acceptance(small, "no attack", "strict", fraction)["honest_accepted"] < default, fraction


def test_colluders_can_replace_the_text_of_honest_experiences_they_ride_on(small):
    # The medoid bounds where the chosen text lies, not whose it is (dso.core.aggregate.medoid WARNING):
    # a poisoned wording within cosine ~0.99 of an honest one wins it, under either policy.
    for policy in ("default", "strict"):
        assert acceptance(small, "collusion", policy, "0.45")["hijacked"] > 0, policy


def test_low_confidence_votes_move_honest_confidence_little_at_10_percent_and_suppress_niche_experiences_near_half(small):
    low = acceptance(small, "confidence", "default", "0.10")
    assert low["honest_lost"] == 0 and abs(low["confidence_shift_mean"]) < 0.1
    assert acceptance(small, "confidence", "default", "0.45")["honest_lost"] > 0


def test_simulation_is_deterministic(small):
    again = simulate(SMALL)
    assert again["code_attacks"] == small["code_attacks"] and again["acceptance"] == small["acceptance"]


# -- the stored results behind the README ---------------------------------------------------------


def test_stored_results_cover_every_fraction_attack_and_aggregator(stored):
    assert stored["fractions"] == KEYS
    assert stored["aggregators"] == list(AGGREGATORS)
    assert set(stored["code_attacks"]) == set(CODE_ATTACKS)
    assert set(stored["acceptance"]) == {"no attack", *ACCEPTANCE_ATTACKS}
    assert stored["malicious_nodes"] == {k: malicious_count(f, stored["config"]["nodes"]) for k, f in zip(KEYS, FRACTIONS)}
    for by_fraction in stored["code_attacks"].values():
        assert set(by_fraction) == set(KEYS)
        for cells in by_fraction.values():
            assert set(cells) == set(AGGREGATORS)
            assert all(-1 <= c["cosine_min"] <= c["cosine"] <= 1 for c in cells.values())
    for by_policy in stored["acceptance"].values():
        assert set(by_policy) == {"default", "strict"}
        assert all(set(cells) == set(KEYS) for cells in by_policy.values())
    assert byzantine.markdown_table(stored).count("\n") > 30


def test_stored_results_hold_the_defended_defaults(stored):
    for fraction in KEYS:
        for attack in ("flooding", "sybil"):
            assert acceptance(stored, attack, "default", fraction)["attacker_only_accepted"] == 0
        assert acceptance(stored, "collusion", "strict", fraction)["attacker_only_accepted"] == 0
        for attack in CODE_ATTACKS:
            assert stored["code_attacks"][attack][fraction]["majority"]["unanimous_bits_flipped"] == 0
    for attack in CODE_ATTACKS:
        assert min(cosine(stored, attack, "0.10", a) for a in ("median", "majority")) >= 0.95


def test_readme_byzantine_claims_match_results(stored):
    readme = (ROOT / "README.md").read_text()
    flat = " ".join(readme.split())
    collusion = acceptance(stored, "collusion", "default", "0.10")
    hijacked, accepted = collusion["hijacked"], collusion["honest_accepted"]
    assert f"2 colluders (10%) put their text on {hijacked} of the {accepted} honest experiences accepted" in flat
    strict = acceptance(stored, "collusion", "strict", "0.45")
    assert strict["hijacked"] == strict["honest_accepted"]
    lost = [acceptance(stored, "confidence", "default", f)["honest_lost"] for f in KEYS[1:]]
    assert f"{lost[0]}, {lost[1]} and {lost[2]} honest experiences lost at 20/33/45%" in flat
    assert f"({cosine(stored, 'gaussian', '0.10', 'mean'):.2f} at 10%)" in flat
    assert f"{cosine(stored, 'ipm-10', '0.20', 'mean'):.2f} at 20%" in flat
    majority = [min(cosine(stored, a, f, "majority") for a in CODE_ATTACKS) for f in KEYS[1:3]]
    assert f"{majority[0]:.2f} at 20%, {majority[1]:.2f} at 33%" in flat
    assert max(cosine(stored, "ipm-10", f, "mean") for f in KEYS) < 0

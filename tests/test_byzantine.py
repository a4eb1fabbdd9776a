"""The Byzantine benchmark as a specification: what the defended defaults withstand, where the
undefended mean breaks, what the rules of issue 14 (clipped codes, core-words texts, endorsement,
reputation) add, and the documented trade-offs and limits (a coalition at or above the default
policy's bar gets its experience in; ALIE beats every code rule from a fifth of equal-weight nodes;
a slow burn weighs as much as an honest node), on a smaller simulated network of real texts and
real embeddings (seeded: the same figures on every run)."""

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
    CODE_RULES,
    FRACTIONS,
    REPUTATION_SCENARIOS,
    RULES,
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


def acceptance(results: dict, attack: str, rules: str, fraction: str) -> dict:
    return results["acceptance"][attack][rules][fraction]


def scenario(results: dict, name: str, fraction: str) -> dict:
    return results["reputation"]["scenarios"][name][fraction]


TODAY, STRICT, NEW, THIRD = "default (today)", "strict (today)", "default (new)", "third (new)"
RIDING = ("collusion", "collusion-prepend")


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


def test_neither_code_rule_flips_a_bit_all_honest_nodes_agree_on(small):
    # The majority's guarantee holds below half; the clipped rule's is proven below a third and
    # measured up to 45% under every attack of the suite.
    for attack in CODE_ATTACKS:
        for fraction in KEYS:
            for rule in CODE_RULES:
                assert small["code_attacks"][attack][fraction][rule]["unanimous_bits_flipped"] == 0, (attack, fraction, rule)


def test_clipped_code_holds_0_95_where_the_majority_fails_under_sign_flips_noise_and_ipm(small):
    for fraction in KEYS[:3]:
        for attack in ("sign-flip", "gaussian", "ipm-0.1"):
            assert cosine(small, attack, fraction, "clipped") >= 0.95, (attack, fraction)
    assert cosine(small, "gaussian", "0.45", "clipped") >= 0.95
    for fraction in LOW:
        assert cosine(small, "ipm-10", fraction, "clipped") >= 0.95, fraction
    assert cosine(small, "alie", "0.10", "clipped") >= 0.95
    failing = [(a, f) for a in CODE_ATTACKS for f in KEYS if cosine(small, a, f, "majority") < 0.95]
    assert sum(cosine(small, a, f, "clipped") >= 0.95 for a, f in failing) >= 6  # of 13 on this small network (6 of 12 on the full bench)


def test_clipped_code_is_never_much_worse_than_the_majority(small):
    for attack in CODE_ATTACKS:
        for fraction in KEYS:
            assert cosine(small, attack, fraction, "clipped") >= cosine(small, attack, fraction, "majority") - 0.01, (attack, fraction)


def test_alie_beats_every_code_rule_from_a_fifth_of_equal_weight_nodes(small):
    # The documented null result: attackers just inside the honest spread move any aggregate by
    # their share times that spread (Karimireddy, He, Jaggi 2022); only weight (reputation) helps.
    for fraction in KEYS[1:]:
        for rule in CODE_RULES:
            assert cosine(small, "alie", fraction, rule) < 0.95, (fraction, rule)


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
        for rules in (TODAY, NEW):
            cell = acceptance(small, attack, rules, fraction)
            assert (cell["attacker_only_accepted"], cell["honest_lost"], cell["hijacked"]) == (0, 0, 0), (rules, fraction)


def test_sybil_reports_are_all_dropped(small):
    for fraction in KEYS:
        attackers = malicious_count(float(fraction), SMALL.nodes)
        sybil_reports = attackers * SMALL.sybils_per_attacker * (1 + small["experiences"]["total"])
        assert acceptance(small, "sybil", NEW, fraction)["dropped_reports"] == sybil_reports


def test_strict_policy_stops_every_coalition_below_half(small):
    for fraction in KEYS:
        for attack in RIDING:
            assert acceptance(small, attack, STRICT, fraction)["attacker_only_accepted"] == 0, fraction


def test_default_policies_accept_a_coalition_of_three_or_more_colluders(small):
    # The documented trade-off (AcceptancePolicy CAUTION): 3 admitted colluders of equal weight meet
    # the default bar, today's and the new one alike.
    assert malicious_count(0.10, SMALL.nodes) == 2
    for rules in (TODAY, NEW):
        assert acceptance(small, "collusion", rules, "0.10")["attacker_only_accepted"] == 0
        for fraction in KEYS[1:]:
            assert acceptance(small, "collusion", rules, fraction)["attacker_only_accepted"] >= SMALL.collusion_junk, (rules, fraction)


def test_a_bar_of_a_third_stops_coalitions_under_a_third_and_costs_liveness(small):
    # 2 and 4 of 20 colluders are under a third of the weight; 7 of 20 (35%) is not.
    for fraction in LOW:
        for attack in RIDING:
            assert acceptance(small, attack, THIRD, fraction)["attacker_only_accepted"] == 0, (attack, fraction)
    assert acceptance(small, "collusion", THIRD, "0.33")["attacker_only_accepted"] > 0
    today = acceptance(small, "no attack", TODAY, "0.10")["honest_accepted"]
    assert acceptance(small, "no attack", THIRD, "0.10")["honest_accepted"] < 0.9 * today


def test_strict_policy_costs_liveness_even_without_attack(small):
    for fraction in KEYS:
        default = acceptance(small, "no attack", TODAY, fraction)["honest_accepted"]
        assert acceptance(small, "no attack", STRICT, fraction)["honest_accepted"] < default, fraction


def test_new_default_accepts_at_least_nine_tenths_of_what_todays_accepts_without_attack(small):
    for fraction in KEYS:
        today = acceptance(small, "no attack", TODAY, fraction)["honest_accepted"]
        assert acceptance(small, "no attack", NEW, fraction)["honest_accepted"] >= 0.9 * today, fraction


def test_the_embedding_medoid_lets_a_minority_of_a_cluster_replace_its_text(small):
    # The medoid bounds where the chosen text lies, not whose it is (dso.core.aggregate.medoid WARNING):
    # a poisoned wording within cosine ~0.99 of an honest one wins it, even as a minority of the cluster.
    for rules in (TODAY, STRICT):
        assert acceptance(small, "collusion", rules, "0.20")["hijacked_by_minority"] > 0, rules
        assert acceptance(small, "collusion", rules, "0.45")["hijacked"] > 0, rules


def test_core_words_never_hand_a_cluster_to_colluders_who_are_a_minority_of_its_weight(small):
    for attack in RIDING:
        for rules in (NEW, THIRD):
            for fraction in KEYS:
                assert acceptance(small, attack, rules, fraction)["hijacked_by_minority"] == 0, (attack, rules, fraction)
        for fraction in KEYS:
            assert acceptance(small, attack, NEW, fraction)["hijacked"] <= acceptance(small, attack, TODAY, fraction)["hijacked"]


def test_low_confidence_votes_suppress_niche_experiences_under_the_median_rule_and_not_under_endorsement(small):
    low = acceptance(small, "confidence", TODAY, "0.10")
    assert low["honest_lost"] == 0 and abs(low["confidence_shift_mean"]) < 0.1
    assert acceptance(small, "confidence", TODAY, "0.45")["honest_lost"] > 0
    for fraction in KEYS:
        endorsed = acceptance(small, "confidence", NEW, fraction)
        assert abs(endorsed["confidence_shift_mean"]) < 0.01, fraction
        # At most one, and not through confidence: the attackers' reports moved a cluster boundary and
        # split a paraphrase pair's honest support (clustering counts every reporting node).
        assert endorsed["honest_lost"] <= 1, fraction


# -- reputation ------------------------------------------------------------------------------------


def test_newly_admitted_and_farming_coalitions_get_nothing_in_and_cannot_move_codes(small):
    for name in ("newcomers", "farmers"):
        for fraction in KEYS:
            cell = scenario(small, name, fraction)
            collusion = cell["collusion"]
            assert (collusion["attacker_only_accepted"], collusion["honest_lost"], collusion["hijacked"]) == (0, 0, 0), (name, fraction)
            assert min(cell["codes"].values()) >= 0.95 and cell["unanimous_bits_flipped"] == 0, (name, fraction)


def test_reputation_costs_no_liveness_when_honest_nodes_have_a_record(small):
    for name in REPUTATION_SCENARIOS:
        for fraction in KEYS:
            today = acceptance(small, "no attack", TODAY, fraction)["honest_accepted"]
            assert scenario(small, name, fraction)["collusion"]["honest_accepted_without_attack"] >= 0.9 * today, (name, fraction)


def test_a_slow_burn_weighs_no_more_than_the_best_honest_node_and_less_once_caught(small):
    weights = small["reputation"]["weights"]
    assert weights["slow-burn"] <= weights["honest (highest)"]
    assert weights["slow-burn, caught"] < weights["honest (lowest)"]
    for fraction in KEYS:
        caught, burning = scenario(small, "slow-burn, caught", fraction), scenario(small, "slow-burn", fraction)
        # About its share of the nodes (honest nodes with shorter records weigh a little less).
        assert caught["malicious_weight_share"] < burning["malicious_weight_share"] <= malicious_count(float(fraction), SMALL.nodes) / SMALL.nodes + 0.01
        assert caught["codes"]["alie"] >= burning["codes"]["alie"] - 0.005, fraction


def test_farming_many_tiny_batches_buys_about_as_much_weight_as_waiting_the_same_epochs(small):
    weights = small["reputation"]["weights"]
    assert weights["newcomers"] <= weights["farmers"] < 2 * weights["newcomers"] < weights["honest (lowest)"] / 4


def test_simulation_is_deterministic(small):
    again = simulate(SMALL)
    assert again["code_attacks"] == small["code_attacks"] and again["acceptance"] == small["acceptance"]


# -- the stored results behind the README ---------------------------------------------------------


def test_stored_results_cover_every_fraction_attack_aggregator_rule_set_and_scenario(stored):
    assert stored["fractions"] == KEYS
    assert stored["aggregators"] == list(AGGREGATORS)
    assert set(stored["code_attacks"]) == set(CODE_ATTACKS)
    assert set(stored["acceptance"]) == {"no attack", *ACCEPTANCE_ATTACKS}
    assert set(stored["reputation"]["scenarios"]) == set(REPUTATION_SCENARIOS)
    assert stored["per_cluster_cost"]["load_average"] > 0
    assert stored["malicious_nodes"] == {k: malicious_count(f, stored["config"]["nodes"]) for k, f in zip(KEYS, FRACTIONS)}
    for by_fraction in stored["code_attacks"].values():
        assert set(by_fraction) == set(KEYS)
        for cells in by_fraction.values():
            assert set(cells) == set(AGGREGATORS)
            assert all(-1 <= c["cosine_min"] <= c["cosine"] <= 1 for c in cells.values())
    for by_rules in stored["acceptance"].values():
        assert set(by_rules) == set(RULES)
        assert all(set(cells) == set(KEYS) for cells in by_rules.values())
    assert byzantine.markdown_table(stored).count("\n") > 30


def test_stored_results_hold_the_defended_defaults(stored):
    for fraction in KEYS:
        for attack in ("flooding", "sybil"):
            for rules in (TODAY, NEW):
                assert acceptance(stored, attack, rules, fraction)["attacker_only_accepted"] == 0
        for attack in RIDING:
            assert acceptance(stored, attack, STRICT, fraction)["attacker_only_accepted"] == 0
            assert acceptance(stored, attack, NEW, fraction)["hijacked_by_minority"] == 0
        assert acceptance(stored, "confidence", NEW, fraction)["honest_lost"] == 0
        for attack in CODE_ATTACKS:
            for rule in CODE_RULES:
                assert stored["code_attacks"][attack][fraction][rule]["unanimous_bits_flipped"] == 0
        for name in ("newcomers", "farmers"):
            assert scenario(stored, name, fraction)["collusion"]["attacker_only_accepted"] == 0
    for attack in CODE_ATTACKS:
        assert min(cosine(stored, attack, "0.10", a) for a in ("median", "majority", "clipped")) >= 0.95


def test_readme_and_security_md_byzantine_claims_match_results(stored):
    flat = " ".join((ROOT / "README.md").read_text().split())
    security = " ".join((ROOT / "SECURITY.md").read_text().split())
    goal = stored["goal"]["cosine"]
    # Codes.
    assert f"({cosine(stored, 'gaussian', '0.10', 'mean'):.2f} at 10%)" in flat
    assert f"{cosine(stored, 'ipm-10', '0.20', 'mean'):.2f} at 20%" in flat
    assert max(cosine(stored, "ipm-10", f, "mean") for f in KEYS) < 0
    majority = [min(cosine(stored, a, f, "majority") for a in CODE_ATTACKS) for f in KEYS[1:3]]
    assert f"{majority[0]:.2f} at 20%, {majority[1]:.2f} at 33%" in flat
    met = {rule: sum(cosine(stored, a, f, rule) >= goal for a in CODE_ATTACKS for f in KEYS) for rule in CODE_RULES}
    assert f"it meets the goal in {met['majority']} of the 20 cells" in flat and f"meets it in {met['clipped']}:" in flat
    assert f"in {met['clipped']} of 20 cells (the per-bit majority: {met['majority']})" in security
    clipped = lambda a, f: f"{cosine(stored, a, f, 'clipped'):.3f}"  # noqa: E731
    assert f"({clipped('sign-flip', '0.45')} and {clipped('gaussian', '0.45')} at 45%)" in flat
    assert f"IPM(10) at 33% and 45% ({clipped('ipm-10', '0.33')}, {clipped('ipm-10', '0.45')})" in flat
    assert f"IPM(0.1) at 45% ({clipped('ipm-0.1', '0.45')};" in flat
    alie = " / ".join(clipped("alie", f) for f in KEYS[1:])
    alie_majority = " / ".join(f"{cosine(stored, 'alie', f, 'majority'):.3f}" for f in KEYS[1:])
    assert f"ALIE from 20% ({alie}, barely above the majority's {alie_majority})" in flat
    assert " / ".join(f"{cosine(stored, 'alie', f, 'clipped'):.2f}" for f in KEYS[1:]) in security
    # Reputation.
    weights = stored["reputation"]["weights"]
    assert f"Nodes admitted two epochs ago weigh {weights['newcomers']:.3f}" in flat and f"epochs {weights['farmers']:.3f}" in flat
    shares = [scenario(stored, n, "0.45")["malicious_weight_share"] for n in ("newcomers", "farmers")]
    assert f"(at most {shares[0]:.1%} and {shares[1]:.1%} of the weight at 45%" in flat
    assert f"weighs {weights['slow-burn']:.3f}, as much as the best honest node" in flat and weights["slow-burn"] == weights["honest (highest)"]
    assert f"it weighs {weights['slow-burn, caught']:.1f}: ALIE at 20% rises from {scenario(stored, 'slow-burn', '0.20')['codes']['alie']:.3f} to " \
        f"{scenario(stored, 'slow-burn, caught', '0.20')['codes']['alie']:.3f}" in flat
    for name in ("newcomers", "farmers"):
        assert min(min(scenario(stored, name, f)["codes"].values()) for f in KEYS) >= 0.98
    assert "its code cells are within 0.025 of what equal weights give, and its collusion gets as much junk in" in flat
    for f in KEYS:
        for attack, value in scenario(stored, "slow-burn", f)["codes"].items():
            assert abs(value - cosine(stored, attack, f, "clipped")) <= 0.025, (attack, f)
        burning = scenario(stored, "slow-burn", f)["collusion"]["attacker_only_accepted"]
        assert burning == acceptance(stored, "collusion", NEW, f)["attacker_only_accepted"], f
    # Acceptance.
    today = [acceptance(stored, "no attack", TODAY, f)["honest_accepted"] for f in KEYS]
    assert [acceptance(stored, "no attack", NEW, f)["honest_accepted"] for f in KEYS] == today
    assert f"({' / '.join(map(str, today))} of 40:" in flat
    third = [acceptance(stored, "no attack", THIRD, f)["honest_accepted"] for f in KEYS]
    ratios = [t / d for t, d in zip(third, today)]
    assert f"accepts {min(third)}-{max(third)} of the 40 honest experiences without attack ({min(ratios) * 100:.0f}-{max(ratios):.0%}" in flat
    assert f"accepts {min(ratios) * 100:.0f}-{max(ratios):.0%} of what the default does" in security
    flooded = [acceptance(stored, "flooding", THIRD, f)["honest_lost"] for f in KEYS]
    assert f"(flooding costs it {min(flooded)} to {max(flooded)} honest experiences)" in flat
    # Riding.
    riding = acceptance(stored, "collusion", TODAY, "0.10")
    prepend = acceptance(stored, "collusion-prepend", TODAY, "0.10")
    assert (f"2 colluders (10%) put their text on {riding['hijacked']} of the {riding['honest_accepted']} honest experiences accepted "
            f"({prepend['hijacked']} when prepending), {riding['hijacked_by_minority']} of them") in flat
    assert f"gives them {acceptance(stored, 'collusion', NEW, '0.10')['hijacked']} of {riding['honest_accepted']}" in flat
    rest = " / ".join(str(acceptance(stored, "collusion", NEW, f)["hijacked"]) for f in KEYS[1:])
    assert f"The rest ({rest} at 20 / 33 / 45% when appending)" in flat
    # Confidence.
    lost = [acceptance(stored, "confidence", TODAY, f)["honest_lost"] for f in KEYS[1:]]
    assert f"{lost[0]}, {lost[1]} and {lost[2]} honest experiences lost at 20/33/45%" in flat
    assert all(acceptance(stored, "confidence", NEW, f)["honest_lost"] == 0 for f in KEYS)

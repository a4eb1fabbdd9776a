"""The pure rules of the learning loop: the numeric verifier, the lesson guard rails, which groups
enter, and the confidence a group's rewards give its lesson."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core.lessons import check_lesson, group_confidence, group_enters, task_names, task_numbers
from dso.core.practice import Operation, merge_operations, parse_lessons, parse_operations
from dso.core.verifiers import NumericVerifier, final_number, get_verifier, parse_number, reference_number
from dso.errors import InputError

VERIFY = NumericVerifier()
TASK = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
REFERENCE = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"


def test_gsm8k_references_and_replies_in_every_usual_form():
    assert reference_number(REFERENCE) == 72
    for reply in ("She sold 72 clips.\nAnswer: 72", "so 48 + 24 = 72 in total #### 72", "The total is \\boxed{72}.", "48 + 24 = 72",
                  "The answer is $72.", "Answer: 72.0", "Answer: **72**"):
        assert VERIFY.verify(reply, REFERENCE).reward == 1.0, reply
    for reply in ("Answer: 71", "She sold 48 clips. Then 24 more.", "I do not know", "Answer: 72 clips? no wait, Answer: 24"):
        assert VERIFY.verify(reply, REFERENCE).reward == 0.0, reply


def test_a_rounded_decimal_counts_only_to_the_places_it_writes():
    assert VERIFY.verify("Answer: 0.33", "#### 1/3").reward == 1.0 and VERIFY.verify("Answer: 0.3", "#### 1/3").reward == 0.0
    assert VERIFY.verify("Answer: 999999", "#### 1000000").reward == 0.0


def test_the_final_answer_line_wins_over_later_numbers_and_earlier_ones():
    assert final_number("Answer: 5\nCheck: 2 + 3 = 5, and 10 is wrong") == "5"
    assert VERIFY.verify("I do not know", REFERENCE).predicted is None


def test_a_reference_without_a_number_is_InputError():
    with pytest.raises(InputError, match="no number"):
        VERIFY.verify("Answer: 3", "the answer is unknown")
    with pytest.raises(InputError, match="unknown verifier"):
        get_verifier("exact-match-llm-judge")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9), st.sampled_from(["Answer: {}", "#### {}", "\\boxed{{{}}}", "so it is {}"]),
       st.booleans())
def test_any_integer_written_as_the_final_answer_is_accepted_and_its_neighbour_is_not(value, form, commas):
    written = f"{value:,}" if commas else str(value)
    reply = "Let me think step by step, 3 + 4 = 7.\n" + form.format(written)
    assert VERIFY.verify(reply, f"work #### {value}").reward == 1.0
    assert VERIFY.verify(reply, f"work #### {value + 1}").reward == 0.0


@settings(max_examples=200, deadline=None)
@given(st.fractions(min_value=-1000, max_value=1000, max_denominator=50))
def test_parse_number_reads_back_decimals_and_fractions_exactly(value):
    assert parse_number(f"{value.numerator}/{value.denominator}") == value
    decimal = f"{float(value):.6f}"
    assert abs(parse_number(decimal) - value) <= Fraction(1, 10**6)


def test_names_and_numbers_of_a_task():
    assert task_numbers(TASK) == {"48"} and task_numbers("It cost $1,200.50 in total") == {"1200.50"}
    assert task_names(TASK) == {"Natalia"}
    assert task_names("Weng earns $12 an hour for babysitting. Yesterday, she did 50 minutes of babysitting.") == {"Weng"}
    assert task_names("How many apples are left on Monday? She ate three.") == set()


def test_guard_rails_keep_a_general_one_sentence_lesson():
    assert check_lesson("When a quantity is half of another, compute the other one first and then halve it.", TASK).ok


@pytest.mark.parametrize("lesson, reason", [
    ("When Natalia sells clips, add both months.", "copies names from the task: Natalia"),
    ("When someone sells 48 items and then half as many, add both amounts.", "copies numbers from the task: 48"),
    ("Halve the first amount. Then add both amounts together.", "not one sentence"),
    ("Add them.", "length: 2 words"),
    ("Break the problem into smaller parts and solve each part carefully.", "copies an example shown in the prompt"),
])
def test_guard_rails_refuse_with_a_reason(lesson, reason):
    examples = ["Break the problem into smaller parts and solve each part."]
    check = check_lesson(lesson, TASK, prompt_examples=examples)
    assert not check.ok and any(reason in r for r in check.reasons), check.reasons


def test_a_near_duplicate_of_a_kept_lesson_is_refused_by_cosine():
    kept = np.eye(4, dtype=np.float32)[:2]
    close = np.array([0.95, 0.312, 0, 0], dtype=np.float32)
    close /= np.linalg.norm(close)
    lesson = "When a quantity is half of another, compute the other one first and then halve it."
    assert "near-duplicate" in check_lesson(lesson, TASK, close, kept).reasons[0]
    assert check_lesson(lesson, TASK, np.array([0, 0, 1, 0], dtype=np.float32), kept).ok


def test_only_groups_with_both_successes_and_failures_enter():
    assert group_enters([1, 0]) and group_enters([1, 0, 0, 0])
    assert not group_enters([1, 1, 1]) and not group_enters([0, 0]) and not group_enters([0.5, 0.5]) and not group_enters([1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=16))
def test_confidence_is_in_0_1_zero_without_variance_and_symmetric(rewards):
    confidence = group_confidence(rewards)
    assert 0.0 <= confidence <= 1.0
    assert confidence == pytest.approx(group_confidence([1 - r for r in rewards]), abs=1e-9)
    if len(set(rewards)) == 1:
        assert confidence == 0.0 and not group_enters(rewards)


def test_confidence_grows_with_an_even_split_and_with_the_group_size():
    assert group_confidence([1, 0]) == pytest.approx(0.5)
    assert group_confidence([1, 1, 1, 1, 0, 0, 0, 0]) == pytest.approx(0.8)
    assert group_confidence([1, 0, 0, 0, 0, 0, 0, 0]) < group_confidence([1, 1, 1, 1, 0, 0, 0, 0])
    with pytest.raises(InputError):
        group_confidence([1.5, 0])


def test_generic_advice_is_refused_by_cosine_to_the_generic_phrases():
    generic = np.eye(4, dtype=np.float32)[:1]
    lesson = "When a quantity is half of another, compute the other one first and then halve it."
    near = np.array([0.7, 0.714, 0, 0], dtype=np.float32)
    near /= np.linalg.norm(near)
    assert "generic advice" in check_lesson(lesson, TASK, near, generic_vectors=generic).reasons[0]
    assert check_lesson(lesson, TASK, np.array([0.6, 0.8, 0, 0], dtype=np.float32), generic_vectors=generic).ok


def test_lessons_are_read_from_bullets_or_numbers_with_markup_stripped():
    reply = "Here are the lessons:\n- **When a price is per item**, multiply by the count.\n2. When units differ, convert first.\n- third"
    assert parse_lessons(reply, 2) == ["When a price is per item, multiply by the count.", "When units differ, convert first."]
    assert parse_lessons("When a total is shared, divide it.", 3) == ["When a total is shared, divide it."]


def test_operations_are_read_from_the_first_json_array_and_unknown_targets_dropped():
    reply = """Sure.\n```json\n[{"operation": "ADD", "id": null, "content": "N1: When units differ, convert first."},
    {"operation": "update", "id": "L2", "content": "When a rate is per hour, multiply by the hours."},
    {"operation": "DELETE", "id": "L9", "content": ""}, {"operation": "NONE", "id": null, "content": "x"},
    {"operation": "FROB", "id": null, "content": "y"}]\n```"""
    ops = parse_operations(reply, ["L1", "L2"], 0.5)
    assert ops == [Operation("ADD", "When units differ, convert first.", None, 0.5),
                   Operation("UPDATE", "When a rate is per hour, multiply by the hours.", "L2", 0.5)]
    assert parse_operations("I think we should add it.", ["L1"]) is None


def test_mechanical_reconcile_lets_delete_win_and_keeps_the_most_confident():
    ops = [Operation("UPDATE", "a", "L1", 0.4), Operation("DELETE", "", "L1"), Operation("UPDATE", "b", "L2", 0.3),
           Operation("UPDATE", "c", "L2", 0.6), Operation("ADD", "Same lesson.", None, 0.2), Operation("ADD", "same lesson.", None, 0.7)]
    merged = merge_operations(ops)
    assert merged == [Operation("DELETE", "", "L1"), Operation("UPDATE", "c", "L2", 0.6), Operation("ADD", "same lesson.", None, 0.7)]

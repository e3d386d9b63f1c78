"""Pure parts of the SDP client: friendly values to SDP shapes, custom-field labels, cache."""

from __future__ import annotations

import pytest

from sdp.fields import (
    FieldValueError,
    custom_fields,
    lookup,
    request_fields,
    search_criteria,
    user,
)
from sdp.metainfo import FieldLabels, udf_labels


@pytest.mark.parametrize(
    ("value", "shape"),
    [("High", {"name": "High"}), ("3", {"id": "3"}), (3, {"id": "3"}),
     ({"name": "x", "id": "1"}, {"name": "x", "id": "1"}), (" 1 - Low ", {"name": "1 - Low"})],
)  # fmt: skip
def test_lookup(value: object, shape: dict) -> None:
    assert lookup(value, "priority") == shape


@pytest.mark.parametrize("value", [None, True, "", "  "])
def test_lookup_refuses_empty_and_booleans(value: object) -> None:
    with pytest.raises(FieldValueError, match="priority"):
        lookup(value, "priority")


def test_users_by_email_id_or_name() -> None:
    assert user("a@b.example", "technician") == {"email_id": "a@b.example"}
    assert user("12", "technician") == {"id": "12"}
    assert user("Ann Smith", "technician") == {"name": "Ann Smith"}
    with pytest.raises(FieldValueError, match="neither an email address nor a numeric"):
        user("Ann Smith", "owner", allow_name=False)
    with pytest.raises(FieldValueError, match="empty"):
        user("", "owner", allow_name=False)


def test_request_fields_leave_other_fields_as_written() -> None:
    assert request_fields(
        {"subject": "S", "due_by_time": "1764400000000", "udf_fields": {"udf_char1": "x"},
         "first_response_due_by_time": {"value": 5}}
    ) == {
        "subject": "S", "due_by_time": {"value": 1764400000000},
        "udf_fields": {"udf_char1": "x"}, "first_response_due_by_time": {"value": 5},
    }  # fmt: skip


def test_search_criteria_short_and_long_forms() -> None:
    assert search_criteria({"status.name": "Open", "priority.name": ["High", "Urgent"]}) == [
        {"field": "status.name", "condition": "is", "value": "Open"},
        {"field": "priority.name", "condition": "is", "values": ["High", "Urgent"],
         "logical_operator": "AND"},
    ]  # fmt: skip
    sdp_form = [{"field": "subject", "condition": "contains", "value": "vpn"}]
    assert search_criteria(sdp_form) == sdp_form
    with pytest.raises(FieldValueError, match="criteria"):
        search_criteria("status is open")
    with pytest.raises(FieldValueError):
        search_criteria(["subject"])


def test_udf_labels_in_both_shapes() -> None:
    keyed = {"fields": {"udf_fields": {"fields": {"udf_char1": {"display_name": "Asset Tag"}}},
                        "subject": {"display_name": "Subject"}}}  # fmt: skip
    listed = {"fields": {"udf_fields": [{"name": "udf_long2", "display_name": "Cost"}]}}
    assert udf_labels(keyed) == {"Asset Tag": "udf_char1"}
    assert udf_labels(listed) == {"Cost": "udf_long2"}
    assert udf_labels(None) == {}


def test_custom_fields_by_label_or_key() -> None:
    labels = {"asset tag": "udf_char1"}
    assert custom_fields({"Asset TAG": 1, "udf_long9": 2}, labels) == {
        "udf_char1": 1, "udf_long9": 2,
    }  # fmt: skip
    with pytest.raises(FieldValueError, match="custom field labels: asset tag"):
        custom_fields({"Colour": "red"}, labels)


def test_label_cache_is_bounded_and_expires() -> None:
    fetched: list[str] = []

    def fetch(base: str) -> object:
        fetched.append(base)
        return {"udf_fields": {"fields": {"udf_char1": {"display_name": base}}}}

    cache = FieldLabels(ttl=3600, max_instances=2)
    for base in ("a", "b", "a", "c", "a", "b"):
        cache.labels(base, lambda base=base: fetch(base))
    # a, b fetched; a cached; c evicts b (least recently used); a cached; b fetched again.
    assert fetched == ["a", "b", "c", "b"]
    stale = FieldLabels(ttl=0.0)
    stale.labels("a", lambda: fetch("a"))
    stale.labels("a", lambda: fetch("a"))
    assert fetched[-2:] == ["a", "a"]
    cache.forget("a")
    cache.labels("a", lambda: fetch("a"))
    assert fetched[-1] == "a"

from __future__ import annotations

import pytest

from agents.knowledge import (
    HIGHLIGHT_START,
    HIGHLIGHT_STOP,
    _fallback_search,
    knowledge_search,
    knowledge_search_cached,
)
from agents.models import KnowledgeDocument
from tests.factories import WorkflowFactory

REFUND_POLICY = (
    "Refunds of up to 100 EUR may be issued for damaged goods without a manager. "
    "Above that amount, a manager approves the refund. Always ask for a photo of the damage."
)
SHIPPING_FAQ = (
    "Parcels ship within two working days. A refund for late delivery is not automatic; "
    "check the carrier's tracking first."
)
ACCESS_RUNBOOK = "Grant group membership only after the manager confirms in writing."


@pytest.fixture
def documents(workflow, other_workflow, empty_cache):
    return {
        "refund-policy": KnowledgeDocument.objects.create(
            workflow=workflow, slug="refund-policy", title="Refund policy", body=REFUND_POLICY
        ),
        "shipping-faq": KnowledgeDocument.objects.create(
            workflow=workflow, slug="shipping-faq", title="Shipping FAQ", body=SHIPPING_FAQ
        ),
        "access": KnowledgeDocument.objects.create(
            workflow=other_workflow, slug="access", title="Refund access", body=ACCESS_RUNBOOK
        ),
    }


def test_full_text_search_ranks_the_best_document_first(workflow, documents):
    results = knowledge_search(workflow=workflow, query="refunds for damaged goods")

    assert [row["slug"] for row in results] == ["refund-policy"]
    top = results[0]
    assert set(top) == {"slug", "title", "snippet", "rank"}
    assert top["title"] == "Refund policy"
    assert top["rank"] > 0
    assert f"{HIGHLIGHT_START}damaged{HIGHLIGHT_STOP}" in top["snippet"]


def test_a_title_match_outranks_a_body_match(workflow, documents):
    results = knowledge_search(workflow=workflow, query="refund")

    assert [row["slug"] for row in results] == ["refund-policy", "shipping-faq"]
    assert results[0]["rank"] > results[1]["rank"]


def test_a_sentence_with_words_in_no_single_document_still_finds_the_nearest(workflow, documents):
    # Every word together matches nothing; any-word matching takes over.
    results = knowledge_search(workflow=workflow, query="how do tracking and photos work?")

    assert {row["slug"] for row in results} == {"refund-policy", "shipping-faq"}


def test_search_stays_inside_the_workflow(workflow, other_workflow, documents):
    assert [row["slug"] for row in knowledge_search(workflow=other_workflow, query="refund")] == [
        "access"
    ]
    assert knowledge_search(workflow=workflow, query="group membership") == []


def test_websearch_syntax_is_accepted_and_hostile_text_is_only_text(workflow, documents):
    results = knowledge_search(workflow=workflow, query='"late delivery" -photo')
    assert [row["slug"] for row in results] == ["shipping-faq"]
    # tsquery operators and quotes in the query do not break the search.
    assert knowledge_search(workflow=workflow, query="refund & | ! ( ' :*") != []


def test_a_repeated_query_is_answered_from_the_cache(
    workflow, documents, django_assert_num_queries
):
    first, cached = knowledge_search_cached(workflow=workflow, query="Refund  POLICY")
    assert not cached

    # Only the documents' version is read; normalisation makes this the same query.
    with django_assert_num_queries(1):
        second, cached = knowledge_search_cached(workflow=workflow, query="refund policy")
    assert cached
    assert second == first


def test_editing_a_document_invalidates_cached_results(workflow, documents):
    before, _ = knowledge_search_cached(workflow=workflow, query="warranty")
    assert before == []

    faq = documents["shipping-faq"]
    faq.body += " Items under warranty are replaced, not refunded."
    faq.save()
    after, cached = knowledge_search_cached(workflow=workflow, query="warranty")

    assert not cached
    assert [row["slug"] for row in after] == ["shipping-faq"]


def test_deleting_a_document_invalidates_cached_results(workflow, documents):
    knowledge_search(workflow=workflow, query="refund")
    documents["shipping-faq"].delete()

    results, cached = knowledge_search_cached(workflow=workflow, query="refund")

    assert not cached
    assert [row["slug"] for row in results] == ["refund-policy"]


def test_the_limit_is_respected_and_bounded(workflow, documents):
    assert len(knowledge_search(workflow=workflow, query="refund", limit=1)) == 1
    with pytest.raises(ValueError, match="limit must be between"):
        knowledge_search(workflow=workflow, query="refund", limit=0)


def test_an_empty_query_finds_nothing(workflow, documents):
    assert knowledge_search(workflow=workflow, query="   ") == []


def test_the_sqlite_fallback_ranks_by_word_hits(db):
    workflow = WorkflowFactory(slug="fallback")
    KnowledgeDocument.objects.create(
        workflow=workflow, slug="policy", title="Refund policy", body=REFUND_POLICY
    )
    KnowledgeDocument.objects.create(
        workflow=workflow, slug="faq", title="Shipping FAQ", body=SHIPPING_FAQ
    )

    results = _fallback_search(workflow.pk, "refund damaged", 5)

    assert [row["slug"] for row in results] == ["policy", "faq"]
    assert results[0]["rank"] > results[1]["rank"]
    assert "damaged" in results[0]["snippet"]

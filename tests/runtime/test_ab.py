"""A/B endpoints: sticky, blind routing by a traffic split; results; promotion history."""

from __future__ import annotations

import pytest

from projects.actions import ActionError
from runtime import actions
from runtime.models import Conversation, Feedback, Message, PromotionAction, Variant
from runtime.queries import ab_results
from tests.runtime.conftest import make_agent


@pytest.fixture
def pair(actors, chat_model):
    return make_agent(actors, chat_model, name="Baseline", deploy=False), make_agent(
        actors, chat_model, name="Candidate", deploy=False
    )


def test_the_split_follows_the_share_and_sticks_to_each_conversation(actors, pair):
    baseline, candidate = pair
    endpoint = actions.do_create_endpoint(
        actors.project, actors.owner, name="Support", baseline=baseline, candidate=candidate, candidate_share=0.3
    )
    keys = [f"conversation-{i}" for i in range(4000)]
    draws = [actions.choose_variant(endpoint, key)[1] for key in keys]
    share = draws.count(Variant.CANDIDATE) / len(draws)
    assert abs(share - 0.3) < 0.03  # 4,000 draws: the standard error is 0.007
    assert [actions.choose_variant(endpoint, key)[1] for key in keys] == draws  # sticky
    # Conversations started on the endpoint keep the agent they drew.
    conversations = [actions.do_start_conversation(actors.org, actors.member, endpoint=endpoint) for _ in range(200)]
    by_variant = {v: [c for c in conversations if c.variant == v] for v in (Variant.BASELINE, Variant.CANDIDATE)}
    assert all(c.agent_id == baseline.pk for c in by_variant[Variant.BASELINE])
    assert all(c.agent_id == candidate.pk for c in by_variant[Variant.CANDIDATE])
    assert 30 <= len(by_variant[Variant.CANDIDATE]) <= 90
    for conversation in conversations[:20]:
        again = Conversation.objects.for_org(actors.org).get(pk=conversation.pk)
        assert (again.agent_id, again.variant) == (conversation.agent_id, conversation.variant)


def test_without_a_running_test_everything_goes_to_the_baseline(actors, pair):
    baseline, candidate = pair
    endpoint = actions.do_create_endpoint(actors.project, actors.owner, name="Plain", baseline=baseline)
    assert {actions.choose_variant(endpoint, str(i)) for i in range(50)} == {(baseline, Variant.BASELINE)}
    actions.do_change_test(endpoint, actors.owner, candidate=candidate, candidate_share=1.0)
    assert {actions.choose_variant(endpoint, str(i))[1] for i in range(50)} == {Variant.CANDIDATE}
    actions.do_stop_test(endpoint, actors.owner, note="enough")
    assert {actions.choose_variant(endpoint, str(i))[1] for i in range(50)} == {Variant.BASELINE}


def test_results_promotion_and_history(actors, pair):
    baseline, candidate = pair
    endpoint = actions.do_create_endpoint(
        actors.project, actors.owner, name="Triage", baseline=baseline, candidate=candidate, candidate_share=0.5
    )
    # Feedback on answers of each variant: the candidate is liked 8 of 10 times, the baseline 3 of 10.
    for variant, agent, ups in ((Variant.CANDIDATE, candidate, 8), (Variant.BASELINE, baseline, 3)):
        for i in range(10):
            conversation = Conversation.objects.create(
                organization=actors.org, agent=agent, endpoint=endpoint, variant=variant, user=actors.member
            )
            answer = Message.objects.create(conversation=conversation, role="assistant", content="answer", agent=agent)
            actions.do_record_inference(
                actors.org,
                agent=agent,
                source="chat",
                outcome="complete",
                endpoint=endpoint,
                variant=variant,
                conversation=conversation,
                message=answer,
                ttft_ms=100 + i,
                latency_ms=1000 + 10 * i,
            )
            actions.do_feedback(answer, actors.member, 1 if i < ups else -1)
    results = ab_results(endpoint)
    assert results["candidate"]["thumbs_up"] == 8 and results["candidate"]["thumbs_down"] == 2
    assert results["candidate"]["up_rate"] == 0.8 and results["baseline"]["up_rate"] == 0.3
    low, high = results["candidate"]["up_rate_ci95"]
    assert low < 0.8 < high and round(low, 2) == 0.49  # Wilson interval of 8/10
    assert results["baseline"]["conversations"] == 10 and results["baseline"]["answers"] == 10
    assert results["baseline"]["ttft_ms"]["p50"] == 104 and results["baseline"]["latency_ms"]["p95"] == 1090

    actions.do_promote_candidate(endpoint, actors.admin, note="clearly better")
    endpoint.refresh_from_db()
    assert endpoint.baseline_id == candidate.pk and endpoint.candidate_id is None and not endpoint.testing
    history = list(endpoint.history.order_by("at", "id"))
    assert [h.action for h in history] == [PromotionAction.STARTED, PromotionAction.PROMOTED]
    promoted = history[-1]
    assert (promoted.baseline_id, promoted.candidate_id, promoted.by_id, promoted.note) == (
        baseline.pk,
        candidate.pk,
        actors.admin.pk,
        "clearly better",
    )
    assert promoted.results["candidate"]["up_rate"] == 0.8  # the evidence, kept with the decision
    with pytest.raises(ActionError, match="no candidate"):
        actions.do_promote_candidate(endpoint, actors.admin)


def test_endpoint_rules(actors, pair, chat_model):
    baseline, candidate = pair
    with pytest.raises(ActionError, match="different agent"):
        actions.do_create_endpoint(actors.project, actors.owner, name="Same", baseline=baseline, candidate=baseline)
    with pytest.raises(ActionError, match="between 0 and 1"):
        actions.do_create_endpoint(
            actors.project, actors.owner, name="Share", baseline=baseline, candidate=candidate, candidate_share=1.5
        )
    # Agents and endpoints share one name space (the OpenAI API's `model`).
    with pytest.raises(ActionError, match="already exists"):
        actions.do_create_endpoint(actors.project, actors.owner, name="Baseline", baseline=baseline)
    endpoint = actions.do_create_endpoint(actors.project, actors.owner, name="Live", baseline=baseline)
    with pytest.raises(ActionError, match="already exists"):
        make_agent(actors, chat_model, name="Live", deploy=False)
    # An agent an endpoint routes to cannot be deleted.
    with pytest.raises(ActionError, match="used by the endpoint"):
        actions.do_delete_agent(baseline)
    actions.do_delete_endpoint(endpoint)
    actions.do_delete_agent(baseline)


def test_feedback_rules(actors, live_agent):
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=live_agent)
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    answer = Message.objects.create(conversation=conversation, role="assistant", content="a")
    with pytest.raises(ActionError, match="on answers"):
        actions.do_feedback(question, actors.member, 1)
    with pytest.raises(ActionError, match="1 .thumbs up. or -1"):
        actions.do_feedback(answer, actors.member, 5)
    actions.do_feedback(answer, actors.member, 1)
    actions.do_feedback(answer, actors.member, -1, "wrong dose")  # changing one's mind replaces the vote
    assert list(Feedback.objects.for_org(actors.org).values_list("rating", "comment")) == [(-1, "wrong dose")]

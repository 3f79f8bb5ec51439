// A user in the Dagster UI, driven through Debian's Chromium by playwright-core.
//
//   node ui_materialize.mjs launch --url URL --out DIR
//     Opens the global asset graph and clicks "Materialize all"; prints {"runId": ...}.
//   node ui_materialize.mjs screenshot --url URL --out DIR --run-id ID --assets a,b,c
//     Checks the run page says Success, then opens the asset graph with every group
//     expanded, zoomed until each asset shows its check status, and saves asset_graph.png.
//
// Any failure saves <command>-failure.png in DIR and exits non-zero with the reason.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    out: { type: 'string' },
    'run-id': { type: 'string' },
    assets: { type: 'string', default: '' },
  },
});
const command = positionals[0];
const { url, out } = values;
if (!['launch', 'screenshot'].includes(command) || !url || !out) {
  throw new Error('usage: ui_materialize.mjs launch|screenshot --url URL --out DIR [...]');
}
mkdirSync(out, { recursive: true });

// Check status only renders on full asset nodes, which Dagster 1.13 draws from zoom 0.6 up;
// at that zoom the whole horizontal graph needs a QHD-wide window.
const VIEWPORT = { width: 2560, height: 1440 };
const TIMEOUT_MS = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // Root in a CI container has no user namespace for Chromium's sandbox.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: VIEWPORT });
page.setDefaultTimeout(TIMEOUT_MS);

// A fresh instance greets its first visitor with a newsletter dialog; a user skips it (the
// test marks it seen, since it can arrive after the page and swallow a click).
const communityDialog = page.getByRole('dialog').filter({ hasText: 'Join the Dagster community' });
await page.addLocatorHandler(communityDialog, async () => {
  await communityDialog.getByRole('button', { name: 'Skip' }).click();
});

async function step(description, action) {
  try {
    return await action();
  } catch (error) {
    throw new Error(`${description}: ${error.message}`, { cause: error });
  }
}

async function openAssetGraph() {
  await step('open the global asset graph', async () => {
    await page.goto(`${url}/asset-groups`);
    await page.getByRole('button', { name: 'Materialize all' }).waitFor();
  });
}

async function launch() {
  await openAssetGraph();
  // The button sends the UI's own launch mutation; its answer names the new run.
  const launched = page.waitForResponse(
    (response) =>
      new URL(response.url()).pathname === '/graphql' &&
      response.request().postDataJSON()?.operationName === 'LaunchPipelineExecution',
  );
  await step('click "Materialize all"', () =>
    page.getByRole('button', { name: 'Materialize all' }).click(),
  );
  const body = await step('wait for the UI to launch the run', async () => (await launched).json());
  // The UI asks for `run { id pipelineName }`; a run's id is its run id.
  const runId = body.data?.launchPipelineExecution?.run?.id;
  if (typeof runId !== 'string') {
    throw new Error(`the UI did not launch a run: ${JSON.stringify(body)}`);
  }
  return { runId };
}

async function runPageSaysSuccess(runId) {
  await step(`open run ${runId} and read its status`, async () => {
    await page.goto(`${url}/runs/${runId}`);
    await page.getByText('Success', { exact: true }).first().waitFor();
  });
}

async function nodeBoxes(assets) {
  const boxes = [];
  for (const asset of assets) {
    const label = page.getByText(asset, { exact: true });
    if ((await label.count()) > 0) boxes.push(await label.first().boundingBox());
  }
  return boxes.filter(Boolean);
}

async function centerGraph(assets) {
  // The zoom controls sit in the graph's viewport; the toolbar row tops it.
  const canvas = await page.locator('#zoom-slider-container').locator('..').boundingBox();
  const toolbar = await page.getByRole('button', { name: 'Materialize all' }).boundingBox();
  const boxes = await nodeBoxes(assets);
  const left = Math.min(...boxes.map((b) => b.x));
  const right = Math.max(...boxes.map((b) => b.x + b.width));
  const top = Math.min(...boxes.map((b) => b.y));
  const bottom = Math.max(...boxes.map((b) => b.y + b.height));
  const canvasTop = toolbar.y + toolbar.height + 12;
  const target = { x: (canvas.x + VIEWPORT.width) / 2, y: (canvasTop + VIEWPORT.height) / 2 };
  // Drag the empty canvas corner: the graph follows the pointer.
  const grab = { x: canvas.x + 8, y: canvasTop + 8 };
  await page.mouse.move(grab.x, grab.y);
  await page.mouse.down();
  await page.mouse.move(
    grab.x + target.x - (left + right) / 2,
    grab.y + target.y - (top + bottom) / 2,
    { steps: 10 },
  );
  await page.mouse.up();
}

async function screenshot(runId, assets) {
  await runPageSaysSuccess(runId);
  await openAssetGraph();
  await step('expand every asset group', async () => {
    await page.getByRole('button', { name: 'settings', exact: true }).click();
    await page.getByRole('menuitem', { name: /Expand all groups/ }).click();
    await page.keyboard.press('Escape');
  });
  await step('make room for the graph', async () => {
    await page.getByRole('button', { name: 'panel_show_right', exact: true }).click();
    await page.getByRole('button', { name: 'Hide navigation' }).click();
  });
  // Dagster shortens a long asset name in the graph (champion_fa…_audit) until zoomed in.
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const assetLabel = (asset) =>
    page
      .getByText(
        new RegExp(`^(${escape(asset)}|${escape(asset.slice(0, 6))}[^ ]*…[^ ]*${escape(asset.slice(-4))})$`),
      )
      .first();
  await step('show every asset', async () => {
    for (const asset of assets) await assetLabel(asset).waitFor();
  });
  await step('center the graph', () => centerGraph(assets));
  await step('zoom in until assets show their checks', async () => {
    const zoomIn = page.getByRole('button', { name: 'zoom_in', exact: true });
    for (let clicks = 0; (await page.getByText('Asset checks').count()) === 0; clicks++) {
      if (clicks > 20) throw new Error('no "Asset checks" row after 20 zoom steps');
      await zoomIn.click();
      await page.waitForTimeout(300);
    }
  });
  const hidden = [];
  for (const asset of assets) {
    if (!(await assetLabel(asset).isVisible())) hidden.push(asset);
  }
  if (hidden.length) throw new Error(`assets outside the zoomed graph: ${hidden.join(', ')}`);
  await page.waitForLoadState('networkidle');
  const path = join(out, 'asset_graph.png');
  await page.screenshot({ path });
  return {
    screenshot: path,
    assetChecksRows: await page.getByText('Asset checks').count(),
  };
}

try {
  const result =
    command === 'launch'
      ? await launch()
      : await screenshot(values['run-id'], values.assets.split(',').filter(Boolean));
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (error) {
  const failure = join(out, `${command}-failure.png`);
  await page.screenshot({ path: failure }).catch(() => {});
  process.stderr.write(`${error.message}\n(screenshot: ${failure})\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}

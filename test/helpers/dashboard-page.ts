import { chromium, type Browser, type Page } from 'playwright-core';
import type { MeshFile } from '../../src/dev/dev-mesh.js';
import { readRootCa } from '../../src/trust/ca-files.js';
import { createIntermediateCa, issueCertificate } from '../../src/trust/ca.js';
import { mintOperatorToken } from '../../src/trust/operator.js';
import { isthmusOk } from './cli.js';

/** Headless Chromium from the system package, as the dashboard's browser tests drive it. */
export async function launchChromium(): Promise<Browser> {
  return await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}

/**
 * Two tokens for a dev mesh's dashboard: the local operator's (`isthmus operator token`), and
 * one signed with a workload's certificate, which verifies just as well but must not count as
 * an operator (403).
 */
export async function dashboardTokens(meshFile: MeshFile): Promise<{ operator: string; workload: string }> {
  const operator = (await isthmusOk(['operator', 'token', '--ttl', '30m'], { ISTHMUS_OPERATOR_DIR: meshFile.operator })).stdout.trim();
  const root = readRootCa(meshFile.ca);
  const east = createIntermediateCa({ root, trustDomain: meshFile.trustDomain, cluster: 'east' });
  const workload = issueCertificate({ identity: `spiffe://${meshFile.trustDomain}/ns/demo/sa/client`, issuer: east });
  return { operator, workload: mintOperatorToken({ certPem: workload.certPem, chainPem: [east.certPem], keyPem: workload.keyPem, ttlSeconds: 600 }).token };
}

/** A write as a script on a page of the dashboard's origin sends it: `headers` decide the credential, with the page's cookie if its context has one. */
export async function sendFrom(p: Page, method: 'PUT' | 'POST', path: string, body: unknown, headers: Record<string, string>): Promise<{ status: number; code: string | undefined }> {
  return await p.evaluate(async ({ method, path, body, headers }) => {
    const res = await fetch(path, { method, headers, body: JSON.stringify(body) });
    const answer = await res.json().catch(() => ({})) as { error?: { code?: string } };
    return { status: res.status, code: answer.error?.code };
  }, { method, path, body, headers });
}

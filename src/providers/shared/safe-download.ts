import dns from 'node:dns';
import net from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { ProviderError } from '../types.ts';
import { deadlineSignal, discardBody } from './http.ts';

/**
 * Downloads an image from a URL an upstream handed us (BFL, fal, xAI, Ark deliver results as links).
 * Such URLs are untrusted (SSRF): only HTTPS, only hosts the provider is known to deliver from, every
 * redirect re-checked, every resolved address checked at connect time (so DNS rebinding and names that
 * resolve to internal addresses fail), no credentials sent, a size cap and a timeout.
 *
 * The one exception is the upstream's own configured origin (the operator's `*_BASE_URL`, e.g. a mirror or
 * a test simulator): it was chosen by the operator, so plain HTTP and its address are allowed there only.
 */
export interface DownloadPolicy {
  /** Host patterns: exact `imgen.x.ai` or wildcard `*.bfl.ai`. */
  allowedHosts: string[];
  /** Origins (`http://127.0.0.1:4010`) trusted because the operator configured them. */
  trustedOrigins?: string[];
  maxBytes?: number;
  timeoutMs?: number;
  provider: string;
}

export interface DownloadedImage {
  bytes: Buffer;
  contentType: string | undefined;
}

const MAX_REDIRECTS = 3;

export async function safeDownload(url: string, policy: DownloadPolicy, signal: AbortSignal): Promise<DownloadedImage> {
  const maxBytes = policy.maxBytes ?? 50 * 1024 * 1024;
  const timer = deadlineSignal(signal, policy.timeoutMs ?? 60_000);
  try {
    return await downloadWithin(url, policy, signal, timer.signal, maxBytes);
  } finally {
    timer.clear();
  }
}

async function downloadWithin(
  url: string,
  policy: DownloadPolicy,
  signal: AbortSignal,
  deadline: AbortSignal,
  maxBytes: number,
): Promise<DownloadedImage> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const target = checkUrl(current, policy);
    const trusted = policy.trustedOrigins?.includes(target.origin) ?? false;
    let response: Dispatcher.ResponseData;
    try {
      response = await request(target, {
        method: 'GET',
        signal: deadline,
        dispatcher: trusted ? trustedAgent : guardedAgent,
        headers: { accept: 'image/*' },
      });
    } catch (error) {
      if (signal.aborted) throw error;
      const refused = (error as { code?: string }).code === 'EADDRNOTALLOWED';
      throw new ProviderError(
        'failed',
        refused
          ? `${policy.provider} returned a result link to a forbidden address; it was not downloaded.`
          : `could not download the result from ${policy.provider}`,
        { accepted: true, cause: error },
      );
    }
    if (response.statusCode >= 300 && response.statusCode < 400 && response.headers.location) {
      discardBody(response.body);
      current = new URL(String(response.headers.location), target).toString();
      continue;
    }
    if (response.statusCode !== 200) {
      discardBody(response.body);
      throw new ProviderError('failed', `downloading the result from ${policy.provider} failed (HTTP ${response.statusCode})`, {
        accepted: true,
      });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body) {
        size += chunk.length;
        if (size > maxBytes)
          throw new ProviderError('failed', `the result from ${policy.provider} is larger than ${maxBytes} bytes`, { accepted: true });
        chunks.push(chunk as Buffer);
      }
    } catch (error) {
      discardBody(response.body);
      if (error instanceof ProviderError || signal.aborted) throw error;
      throw new ProviderError('failed', `the download of the result from ${policy.provider} broke off`, { accepted: true, cause: error });
    }
    const type = response.headers['content-type'];
    return { bytes: Buffer.concat(chunks, size), contentType: Array.isArray(type) ? type[0] : type };
  }
  throw new ProviderError('failed', `${policy.provider}'s result link redirected too many times`, { accepted: true });
}

function checkUrl(raw: string, policy: DownloadPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ProviderError('failed', `${policy.provider} returned a malformed result link`, { accepted: true });
  }
  if (url.username || url.password)
    throw new ProviderError('failed', `${policy.provider} returned a result link with credentials`, { accepted: true });
  if (policy.trustedOrigins?.includes(url.origin)) return url;
  if (url.protocol !== 'https:')
    throw new ProviderError('failed', `${policy.provider} returned a non-HTTPS result link; it was not downloaded.`, { accepted: true });
  const host = url.hostname.toLowerCase();
  if (net.isIP(host.replace(/^\[|\]$/g, '')) || !policy.allowedHosts.some((pattern) => hostMatches(host, pattern))) {
    throw new ProviderError(
      'failed',
      `${policy.provider} returned a result link on a host it does not deliver from; it was not downloaded.`,
      { accepted: true },
    );
  }
  return url;
}

export function hostMatches(host: string, pattern: string): boolean {
  const wanted = pattern.toLowerCase();
  if (wanted.startsWith('*.')) return host.endsWith(wanted.slice(1)) && host.length > wanted.length - 1;
  return host === wanted;
}

/** True for loopback, private, link-local (cloud metadata), CGNAT, multicast and reserved ranges, v4 and v6. */
export function isForbiddenAddress(address: string): boolean {
  const v4 = ipv4Of(address);
  if (net.isIPv4(v4)) {
    const [a, b] = v4.split('.').map(Number);
    return (
      a === 0 ||
      a === 10 ||
      a === 127 ||
      a >= 224 ||
      (a === 100 && b >= 64 && b <= 127) ||
      (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 192 && b === 0) ||
      (a === 198 && (b === 18 || b === 19))
    );
  }
  const v6 = address.toLowerCase();
  return (
    v6 === '::' ||
    v6 === '::1' ||
    v6.startsWith('fc') ||
    v6.startsWith('fd') ||
    v6.startsWith('fe8') ||
    v6.startsWith('fe9') ||
    v6.startsWith('fea') ||
    v6.startsWith('feb') ||
    v6.startsWith('ff') ||
    v6.startsWith('64:ff9b') ||
    v6.startsWith('2001:db8')
  );
}

/** The IPv4 address inside an IPv4-mapped IPv6 address, dotted (`::ffff:127.0.0.1`) or hex (`::ffff:7f00:1`). */
function ipv4Of(address: string): string {
  const mapped = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(.+)$/i.exec(address)?.[1];
  if (mapped === undefined) return address;
  if (net.isIPv4(mapped)) return mapped;
  const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(mapped);
  if (!hex) return address;
  const high = parseInt(hex[1], 16);
  const low = parseInt(hex[2], 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/** Resolves, then refuses forbidden addresses: the connection uses exactly the address that was checked. */
export function guardedLookup(
  hostname: string,
  options: dns.LookupOptions,
  callback: (error: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void,
): void {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, '', 0);
    const allowed = (addresses as dns.LookupAddress[]).filter((entry) => !isForbiddenAddress(entry.address));
    if (allowed.length === 0) {
      const refusal: NodeJS.ErrnoException = new Error(`${hostname} resolves to a forbidden address`);
      refusal.code = 'EADDRNOTALLOWED';
      return callback(refusal, '', 0);
    }
    if (options.all) return callback(null, allowed);
    callback(null, allowed[0].address, allowed[0].family);
  });
}

const guardedAgent = new Agent({
  connect: { lookup: guardedLookup as never, timeout: 10_000 },
  headersTimeout: 60_000,
  bodyTimeout: 60_000,
});
const trustedAgent = new Agent({ connect: { timeout: 10_000 }, headersTimeout: 60_000, bodyTimeout: 60_000 });

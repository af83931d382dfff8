import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { parseUsd } from '../../src/domain/money.ts';
import type { RequestRecord } from '../../src/store/records.ts';
import type { TestServer } from './test-server.ts';

/** Assertions the HTTP and provider suites share: SDK errors, and what a request did to an account's money. */

type AccountRef = { accountId: string };

/**
 * Awaits `promise`, which must reject with an OpenAI SDK APIError of exactly this status, code and param
 * (`null` = absent); returns the error for further checks.
 */
export async function expectError(promise: Promise<unknown>, status: number, code: string | null, param: string | null = null) {
  const error = await promise.then(
    () => assert.fail('expected an error'),
    (caught) => caught,
  );
  assert.ok(error instanceof OpenAI.APIError, `not an APIError: ${error}`);
  assert.equal(error.status, status, error.message);
  assert.equal(error.code ?? null, code);
  assert.equal(error.param ?? null, param);
  return error;
}

/**
 * Runs `call`, which must reject with an OpenAI SDK APIError of this status; code, param and message are
 * checked only when given. Returns the error.
 */
export async function failsWith(
  call: () => Promise<unknown>,
  expected: { status: number; code?: string; param?: string | null; message?: RegExp },
) {
  const error = await call().then(
    () => assert.fail('expected an error'),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof OpenAI.APIError, String(error));
  assert.equal(error.status, expected.status);
  if (expected.code !== undefined) assert.equal(error.code, expected.code);
  if (expected.param !== undefined) assert.equal(error.param, expected.param);
  if (expected.message) assert.match(error.message, expected.message);
  return error;
}

/** What the account spent since its balance was `start`, in nanos. */
export async function spent(t: TestServer, account: AccountRef, start: string): Promise<bigint> {
  return parseUsd(start) - parseUsd(await t.balance(account.accountId));
}

/** Runs `call`, returning its result and what it cost the account (in nanos); nothing may stay held. */
export async function charged<T>(t: TestServer, account: AccountRef, call: () => Promise<T>): Promise<{ result: T; charge: bigint }> {
  const before = parseUsd(await t.balance(account.accountId));
  const result = await call();
  const state = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
  assert.equal(state.held, '0');
  return { result, charge: before - parseUsd(state.balance) };
}

/**
 * Runs `call`, which must make exactly one request on the account, and returns its result, what it cost the account (in
 * nanos, once its hold is resolved: polled like settledState) and that request's record: its `cost` is the charge, its
 * `upstreamCost` what the upstream's bill was (null when it reported nothing usable).
 */
export async function billed<T>(
  t: TestServer,
  account: AccountRef,
  call: () => Promise<T>,
): Promise<{ result: T; charge: bigint; record: RequestRecord }> {
  const earlier = new Set((await t.server.store.listRequests(account.accountId, 1_000)).map((request) => request.id));
  const before = parseUsd(await t.balance(account.accountId));
  const result = await call();
  const charge = before - parseUsd((await settledState(t, account)).balance);
  const made = (await t.server.store.listRequests(account.accountId, 1_000)).filter((request) => !earlier.has(request.id));
  assert.equal(made.length, 1, 'the call made exactly one request');
  const [record] = made;
  assert.equal(record.cost, charge, "the request's recorded cost is what the account was charged");
  assert.equal(record.status, charge > 0n ? 'settled' : 'released');
  return { result, charge, record };
}

/** The account's balance is exactly `balance` and nothing is held: given the balance it started from, nothing was charged. */
export async function expectBalance(t: TestServer, account: AccountRef, balance: string): Promise<void> {
  assertBalance(await t.admin('GET', `/admin/v1/accounts/${account.accountId}`), balance);
}

/** expectBalance once the account's holds are released (polled up to 2 s): for settlements that finish after the response. */
export async function expectBalanceOnceSettled(t: TestServer, account: AccountRef, balance: string): Promise<void> {
  assertBalance(await heldReleased(t, account), balance);
}

/** The account's state once its holds are released (polled up to 2 s); nothing may stay held. */
export async function settledState(t: TestServer, account: AccountRef): Promise<Record<string, any>> {
  const state = await heldReleased(t, account);
  assert.equal(state.held, '0');
  return state;
}

function assertBalance(state: Record<string, any>, balance: string): void {
  assert.equal(state.balance, balance);
  assert.equal(state.held, '0', 'nothing is held');
}

async function heldReleased(t: TestServer, account: AccountRef): Promise<Record<string, any>> {
  let state = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
  for (let tries = 0; state.held !== '0' && tries < 100; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    state = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
  }
  return state;
}

/** An images `usage` for a model that reported no tokens: every count 0 (an integer, as the SDKs type it), and the cost. */
export function usageWithoutTokens(totalCost: number): Record<string, unknown> {
  return {
    input_tokens: 0,
    input_tokens_details: { text_tokens: 0, image_tokens: 0 },
    output_tokens: 0,
    output_tokens_details: { text_tokens: 0, image_tokens: 0 },
    total_tokens: 0,
    prompt_tokens: 0,
    prompt_tokens_details: { cached_tokens: 0, cached_read_tokens: 0, image_tokens: 0 },
    completion_tokens: 0,
    completion_tokens_details: { reasoning_tokens: 0, image_tokens: 0 },
    cost: { total_cost: totalCost },
  };
}

/** Every item of an async iterable (an SDK stream's chunks), in order; Node 20 has no Array.fromAsync. */
export async function collect(stream: AsyncIterable<unknown>): Promise<any[]> {
  const all: any[] = [];
  for await (const item of stream) all.push(item);
  return all;
}

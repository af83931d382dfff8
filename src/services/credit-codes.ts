import { randomBytes, randomUUID } from 'node:crypto';
import { sha256Hex } from '../auth/passwords.ts';
import { GatewayError, invalidRequest } from '../domain/errors.ts';
import { formatUsd, parseUsd, type Nanos } from '../domain/money.ts';
import type { CreditCodeRecord } from '../store/dashboard-types.ts';
import type { Account, Store } from '../store/types.ts';
import { REDEEM_LIMITS, type DashboardUsers } from './dashboard-users.ts';

/**
 * Single-use top-up codes (docs/dashboard.md): `DSC-XXXX-XXXX-XXXX-XXXX`, 80 random bits in Crockford base32. The
 * operator sees a code once, when it is made; the store keeps its SHA-256 and a short prefix to recognise it by.
 * Redemption and the credit are one atomic store step, so a code pays out once however many redeem it at once.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const PREFIX_LENGTH = 8; // "DSC-ABCD"
/** Largest amount one code may carry. */
const MAX_CODE_AMOUNT: Nanos = 100_000n * 1_000_000_000n;

export class CreditCodes {
  constructor(
    private readonly store: Store,
    private readonly users: DashboardUsers,
  ) {}

  async create(input: { amount?: unknown; count?: unknown; note?: unknown }): Promise<Array<{ record: CreditCodeRecord; code: string }>> {
    let amount: Nanos;
    try {
      amount = parseUsd(input.amount);
    } catch (error) {
      throw invalidRequest(`'amount' ${(error as Error).message}; send USD such as "10" or "2.50".`, 'amount');
    }
    if (amount <= 0n || amount > MAX_CODE_AMOUNT)
      throw invalidRequest(`'amount' must be more than 0 and at most $${formatUsd(MAX_CODE_AMOUNT)}.`, 'amount');
    const count = input.count === undefined ? 1 : input.count;
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 1000) {
      throw invalidRequest("'count' must be a whole number from 1 to 1000.", 'count');
    }
    const note = input.note === undefined || input.note === null ? null : input.note;
    if (note !== null && (typeof note !== 'string' || note.length > 500))
      throw invalidRequest("'note' must be a string of at most 500 characters.", 'note');
    const codes = Array.from({ length: count }, () => newCode());
    const records = await this.store.dashboard.createCreditCodes(
      codes.map((code) => ({
        id: `code_${randomUUID().replace(/-/g, '').slice(0, 20)}`,
        hash: codeHash(code),
        prefix: code.slice(0, PREFIX_LENGTH),
        amount,
        note,
      })),
    );
    return records.map((record, index) => ({ record, code: codes[index] }));
  }

  list(limit: number): Promise<CreditCodeRecord[]> {
    return this.store.dashboard.listCreditCodes(limit);
  }

  /** Throttled per account and per IP (failures only), against guessing codes. */
  async redeem(accountId: string, code: unknown, ip: string): Promise<{ account: Account; amount: Nanos }> {
    if (typeof code !== 'string' || code.trim() === '' || code.length > 100)
      throw invalidRequest("'code' must be a credit code like DSC-XXXX-XXXX-XXXX-XXXX.", 'code', 'missing_required_parameter');
    const accountName = `redeem:account:${accountId}`;
    const ipName = `redeem:ip:${ip}`;
    await this.users.refuseIfThrottled([
      [accountName, REDEEM_LIMITS.perAccount],
      [ipName, REDEEM_LIMITS.perIp],
    ]);
    const result = await this.store.dashboard.redeemCreditCode({ hash: codeHash(code), accountId, note: 'credit code' });
    if (result.outcome === 'redeemed') return { account: result.account, amount: result.amount };
    await this.users.recordFailure([accountName, ipName], REDEEM_LIMITS.windowMs);
    if (result.outcome === 'already_redeemed') {
      throw new GatewayError('This code has already been redeemed.', {
        status: 409,
        type: 'invalid_request_error',
        code: 'code_already_redeemed',
        param: 'code',
      });
    }
    throw new GatewayError('This code does not exist. Check it and try again.', {
      status: 404,
      type: 'invalid_request_error',
      code: 'invalid_code',
      param: 'code',
    });
  }
}

export function creditCodeJson(record: CreditCodeRecord, code?: string) {
  return {
    id: record.id,
    ...(code ? { code } : { code_prefix: record.prefix }),
    amount: formatUsd(record.amount),
    note: record.note,
    created_at: Math.floor(record.createdAt / 1000),
    ...(code
      ? {}
      : { redeemed_at: record.redeemedAt === null ? null : Math.floor(record.redeemedAt / 1000), redeemed_by: record.redeemedBy }),
  };
}

function newCode(): string {
  const bytes = randomBytes(16);
  let body = '';
  for (let index = 0; index < 16; index++) body += ALPHABET[bytes[index] & 31];
  return `DSC-${body.match(/.{4}/g)!.join('-')}`;
}

/** Codes are read back by people: case, spaces and stray whitespace do not matter. */
function codeHash(code: string): string {
  return sha256Hex(code.trim().toUpperCase().replace(/\s+/g, ''));
}

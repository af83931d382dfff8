import type { Nanos } from '../domain/money.ts';

/**
 * The seam for online top-ups (none shipped; docs/dashboard.md). A provider starts a checkout for an account and later
 * confirms it from its own webhook; a confirmed payment becomes the same kind of ledger credit a credit code gives
 * (Store.addCredits with a note naming the payment), once per payment id. Wiring one in means: an implementation of
 * this interface in src/services/payments/<name>.ts, a route for its webhook, and a button in the Credits page.
 */
export interface PaymentProvider {
  readonly name: string;
  /** Starts a checkout; the caller is sent to `redirectUrl` to pay. */
  startCheckout(input: { accountId: string; amount: Nanos; returnUrl: string }): Promise<{ paymentId: string; redirectUrl: string }>;
  /** Verifies the provider's webhook (signature and body) and says which payment it settles, if any. */
  confirm(request: {
    headers: Record<string, string | string[] | undefined>;
    body: Buffer;
  }): Promise<{ paymentId: string; accountId: string; amount: Nanos } | undefined>;
}

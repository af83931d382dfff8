import type { LedgerEntry } from './api.ts';
import { time, usd } from './format.ts';

/** An account's ledger, as the member's Credits page and the operator's account page both show it. */
export function LedgerTable({ entries }: { entries: LedgerEntry[] }) {
  return (
    <div class="table-wrap">
      <table data-testid="ledger-table">
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Kind</th>
            <th scope="col" class="num">
              Available
            </th>
            <th scope="col" class="num">
              On hold
            </th>
            <th scope="col">Note</th>
            <th scope="col">Request</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((entry) => (
            <tr key={entry.id}>
              <td>{time(entry.created_at)}</td>
              <td>{entry.kind}</td>
              <td class="num">{signed(entry.available_delta)}</td>
              <td class="num">{signed(entry.held_delta)}</td>
              <td>{entry.note ?? ''}</td>
              <td class="mono small">{entry.request_id ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A change to a balance: "+$10.00", "−$0.001", or "—" for none. */
function signed(amount: string): string {
  if (/^0(\.0*)?$/.test(amount)) return '—';
  return amount.startsWith('-') ? usd(amount) : `+${usd(amount)}`;
}

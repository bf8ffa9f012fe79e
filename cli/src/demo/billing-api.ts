import { createServer, type Server } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { DemoShop } from './shop-data.js';

export interface DemoApi {
  readonly url: string;
  close(): Promise<void>;
}

const sameText = (a: string, b: string): boolean => {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
};

/**
 * The demo's billing API, the target of the example's `billing-api` resource: JSON invoices full
 * of (fake) personal data, answered only to the Authorization header Sluice's credentials carry,
 * so the walkthrough shows both sides: the agent never holds that header, and what comes back to
 * it is masked.
 */
export const startBillingApi = async (host: string, port: number, expectedAuthorization: string | undefined, shop: DemoShop): Promise<DemoApi> => {
  const customerById = new Map(shop.customers.map((customer) => [customer.id, customer]));
  const invoiceOf = (order: DemoShop['orders'][number]) => {
    const customer = customerById.get(order.customerId)!;
    return {
      invoice: `INV-${String(order.id).padStart(5, '0')}`,
      amount: Number(order.total),
      currency: 'USD',
      status: order.status,
      customer: { id: customer.id, name: customer.fullName, email: customer.email, phone: customer.phone },
      payment: { card: customer.cardNumber, iban: customer.iban },
    };
  };
  const server: Server = createServer((request, response) => {
    const json = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(`${JSON.stringify(body, null, 2)}\n`);
    };
    if (expectedAuthorization !== undefined && !sameText(request.headers.authorization ?? '', expectedAuthorization)) {
      return json(401, { error: 'unauthorized', detail: 'the billing API wants its own token, which only Sluice holds' });
    }
    const path = new URL(request.url ?? '/', 'http://billing.invalid').pathname;
    if (request.method !== 'GET') return json(405, { error: 'method not allowed' });
    if (path === '/invoices') return json(200, { invoices: shop.orders.slice(0, 5).map(invoiceOf) });
    const invoice = /^\/invoices\/INV-(\d+)$/.exec(path);
    const order = invoice ? shop.orders[Number(invoice[1]) - 1] : undefined;
    if (order) return json(200, invoiceOf(order));
    if (path === '/admin/users') return json(200, { users: [{ name: 'billing-admin', apiKey: 'sk_live_demo_never_shown' }] });
    json(404, { error: 'not found', try: ['/invoices', '/invoices/INV-00001'] });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

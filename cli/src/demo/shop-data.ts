/**
 * The demo shop's customers and orders: realistic but entirely fake personal data, generated here
 * from a fixed seed so that every run (and every README transcript) shows the same rows.
 * Card numbers pass Luhn, SSNs sit in the valid ranges, IBANs carry correct check digits, phone
 * numbers use the 555-01xx block reserved for fiction, emails use the reserved example domains:
 * the masking detectors recognise every value, and none belongs to anyone.
 */

export interface DemoCustomer {
  readonly id: number;
  readonly fullName: string;
  readonly email: string;
  readonly phone: string;
  readonly ssn: string;
  readonly cardNumber: string;
  readonly iban: string;
  readonly city: string;
  readonly signupIp: string;
  readonly createdAt: string;
}

export interface DemoOrder {
  readonly id: number;
  readonly customerId: number;
  readonly placedAt: string;
  readonly status: 'paid' | 'shipped' | 'delivered' | 'refunded';
  readonly total: string;
  readonly note: string;
}

export interface DemoShop {
  readonly customers: readonly DemoCustomer[];
  readonly orders: readonly DemoOrder[];
}

const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Linus', 'Margaret', 'Dennis', 'Barbara', 'Ken', 'Frances', 'Edsger', 'Radia', 'Tim', 'Hedy', 'Donald', 'Sophie', 'John'];
const LAST_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Torvalds', 'Hamilton', 'Ritchie', 'Liskov', 'Thompson', 'Allen', 'Dijkstra', 'Perlman', 'Berners', 'Lamarr', 'Knuth', 'Wilson', 'Backus'];
const DOMAINS = ['example.com', 'example.org', 'example.net'];
const CITIES = [
  { city: 'Boston', area: '617' },
  { city: 'Denver', area: '303' },
  { city: 'Seattle', area: '206' },
  { city: 'Austin', area: '512' },
  { city: 'Chicago', area: '312' },
  { city: 'Portland', area: '503' },
];
const STATUSES = ['paid', 'shipped', 'delivered', 'refunded'] as const;
const NOTES = [
  'leave at the door',
  'gift wrap please',
  'call {phone} on arrival',
  'invoice to {email}',
  '',
  'fragile',
];

/** mulberry32: a tiny deterministic generator; the data only has to look random, never be secret. */
const seededRandom = (seed: number): (() => number) => {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
};

const digits = (random: () => number, count: number): string => Array.from({ length: count }, () => Math.floor(random() * 10)).join('');

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/** The Luhn check digit that makes `body` + digit a valid card number. */
export const luhnCheckDigit = (body: string): number => {
  let sum = 0;
  for (let index = 0; index < body.length; index++) {
    let digit = Number(body[body.length - 1 - index]);
    if (index % 2 === 0) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return (10 - (sum % 10)) % 10;
};

/** ISO 13616 check digits: the BBAN and country code with "00", letters as numbers, mod 97. */
export const ibanCheckDigits = (country: string, bban: string): string => {
  const numeric = `${bban}${country}00`.replace(/[A-Z]/g, (letter) => String(letter.charCodeAt(0) - 55));
  let remainder = 0;
  for (const character of numeric) remainder = (remainder * 10 + Number(character)) % 97;
  return String(98 - remainder).padStart(2, '0');
};

const cardNumber = (random: () => number): string => {
  const body = random() < 0.5 ? `4${digits(random, 14)}` : `5${1 + Math.floor(random() * 5)}${digits(random, 13)}`;
  const full = `${body}${luhnCheckDigit(body)}`;
  return full.replace(/(\d{4})(?=\d)/g, '$1 ');
};

/** Area 001-899 without 666, group 01-99, serial 0001-9999: the ranges the SSA issues. */
const ssn = (random: () => number): string => {
  let area = 1 + Math.floor(random() * 899);
  if (area === 666) area = 667;
  const group = 1 + Math.floor(random() * 99);
  const serial = 1 + Math.floor(random() * 9999);
  return `${String(area).padStart(3, '0')}-${String(group).padStart(2, '0')}-${String(serial).padStart(4, '0')}`;
};

const iban = (random: () => number): string => {
  const [country, bban] = random() < 0.5 ? ['DE', digits(random, 18)] : ['NL', `${pick(random, ['ABNA', 'INGB', 'RABO'])}${digits(random, 10)}`];
  const compact = `${country}${ibanCheckDigits(country, bban)}${bban}`;
  return compact.replace(/(.{4})(?=.)/g, '$1 ');
};

const DAY_MS = 86_400_000;
const EPOCH = Date.UTC(2025, 0, 6, 9, 0, 0);

/** The whole demo shop for `customerCount` customers; the same seed always gives the same rows. */
export const generateShop = (customerCount = 40, ordersPerCustomer = 3, seed = 20_251_126): DemoShop => {
  const random = seededRandom(seed);
  const customers: DemoCustomer[] = [];
  for (let id = 1; id <= customerCount; id++) {
    const first = pick(random, FIRST_NAMES);
    const last = pick(random, LAST_NAMES);
    const place = pick(random, CITIES);
    customers.push({
      id,
      fullName: `${first} ${last}`,
      email: `${first}.${last}${id}@${pick(random, DOMAINS)}`.toLowerCase(),
      phone: `+1 ${place.area}-555-01${digits(random, 2)}`,
      ssn: ssn(random),
      cardNumber: cardNumber(random),
      iban: iban(random),
      city: place.city,
      signupIp: `203.0.113.${1 + Math.floor(random() * 254)}`,
      createdAt: new Date(EPOCH + Math.floor(random() * 300) * DAY_MS).toISOString(),
    });
  }
  const orders: DemoOrder[] = [];
  for (const customer of customers) {
    for (let index = 0; index < ordersPerCustomer; index++) {
      const note = pick(random, NOTES).replace('{phone}', customer.phone).replace('{email}', customer.email);
      orders.push({
        id: orders.length + 1,
        customerId: customer.id,
        placedAt: new Date(Date.parse(customer.createdAt) + Math.floor(random() * 60) * DAY_MS + Math.floor(random() * DAY_MS)).toISOString(),
        status: pick(random, STATUSES.slice(0, 3)),
        total: (5 + random() * 495).toFixed(2),
        note,
      });
    }
  }
  return { customers, orders };
};

/** Luhn (mod 10) over the digits of a text; other characters are skipped. */
export const luhnValid = (text: string): boolean => {
  let sum = 0;
  let double = false;
  let count = 0;
  for (let index = text.length - 1; index >= 0; index--) {
    const code = text.charCodeAt(index);
    if (code < 48 || code > 57) continue;
    let digit = code - 48;
    if (double) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
    double = !double;
    count++;
  }
  return count > 1 && sum % 10 === 0;
};

export const digitsOf = (text: string): string => {
  let digits = '';
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code >= 48 && code <= 57) digits += text[index];
  }
  return digits;
};

const between = (value: number, low: number, high: number): boolean => value >= low && value <= high;

/**
 * Whether a digit string has the prefix and length of an issued card brand (Visa, Mastercard,
 * Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir). Luhn alone passes one in ten random
 * numbers; the brand table rejects most millisecond timestamps and ids that happen to pass it.
 */
export const cardBrandValid = (digits: string): boolean => {
  const length = digits.length;
  const p2 = Number(digits.slice(0, 2));
  const p3 = Number(digits.slice(0, 3));
  const p4 = Number(digits.slice(0, 4));
  const p6 = Number(digits.slice(0, 6));
  if (digits[0] === '4') return length === 13 || length === 16 || length === 19;
  if (between(p2, 51, 55) || between(p4, 2221, 2720)) return length === 16;
  if (p2 === 34 || p2 === 37) return length === 15;
  if (between(p4, 2200, 2204)) return length >= 16 && length <= 19;
  if (p4 === 6011 || p2 === 65 || between(p3, 644, 649) || between(p6, 622126, 622925)) return length >= 16 && length <= 19;
  if (between(p3, 300, 305) || p2 === 36 || p2 === 38 || p2 === 39) return length >= 14 && length <= 19;
  if (between(p4, 3528, 3589)) return length >= 16 && length <= 19;
  if (p2 === 62) return length >= 16 && length <= 19;
  if (p2 === 50 || between(p2, 56, 69)) return length >= 13 && length <= 19;
  return false;
};

/** US SSN ranges: area not 000, 666 or 9xx; group not 00; serial not 0000. */
export const ssnValid = (area: string, group: string, serial: string): boolean =>
  area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';

/**
 * An age secret key as people mistype it into a recipients input, and a check that a text shows
 * no part of it.
 */

/** Spellings of `identity` (an `AGE-SECRET-KEY-1…` key) that are not valid recipients. */
export function mistypedSecretKeys(identity: string): Record<string, string> {
  const data = identity.slice('AGE-SECRET-KEY-1'.length);
  const typo = data.slice(0, 10) + (data[10] === 'Q' ? 'P' : 'Q') + data.slice(11);
  return {
    'as age-keygen writes it': identity,
    'without the last dash': `AGE-SECRET-KEY1${data}`,
    'with underscores': `AGE_SECRET_KEY_1${data}`,
    'in lower case': identity.toLowerCase(),
    'with spaces': `AGE-SECRET-KEY-1 ${data.slice(0, 29)} ${data.slice(29)}`,
    truncated: identity.slice(0, 50),
    'with a typo': `AGE-SECRET-KEY-1${typo}`,
    'in quotes': `"${identity}"`,
    'without its prefix': data,
  };
}

/** Whether `text` holds any 8 consecutive characters of the key's data, in any case. */
export function showsKey(text: string, identity: string): boolean {
  const data = identity.slice('AGE-SECRET-KEY-1'.length).toUpperCase();
  const upper = text.toUpperCase();
  for (let i = 0; i + 8 <= data.length; i++) if (upper.includes(data.slice(i, i + 8))) return true;
  return false;
}

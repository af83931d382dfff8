/** Dashboard passwords (src/auth/passwords.ts): scrypt with a per-user salt, the parameters stored with the hash. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PASSWORD_PARAMS, decoyPasswordHash, hashPassword, sha256Hex, verifyPassword } from '../../src/auth/passwords.ts';

describe('passwords', () => {
  it('hashes with scrypt N=2^15 r=8 p=1 and a 16-byte salt, never containing the password', async () => {
    const hash = await hashPassword('correct horse battery');
    const [scheme, N, r, p, salt, key] = hash.split('$');
    assert.deepEqual([scheme, Number(N), Number(r), Number(p)], ['scrypt', PASSWORD_PARAMS.N, PASSWORD_PARAMS.r, PASSWORD_PARAMS.p]);
    assert.equal(Buffer.from(salt, 'base64').length, 16);
    assert.equal(Buffer.from(key, 'base64').length, 32);
    assert.equal(hash.includes('correct horse'), false);
  });

  it('verifies the right password only; the same password gets a different salt each time', async () => {
    const one = await hashPassword('correct horse battery');
    const two = await hashPassword('correct horse battery');
    assert.notEqual(one, two);
    assert.equal(await verifyPassword('correct horse battery', one), true);
    assert.equal(await verifyPassword('correct horse battery', two), true);
    assert.equal(await verifyPassword('correct horse batterY', one), false);
    assert.equal(await verifyPassword('', one), false);
  });

  it('reads the parameters from the stored hash, so older or stronger settings keep verifying', async () => {
    const light = await hashPassword('pw with other params', { N: 2 ** 10, r: 8, p: 2 });
    assert.match(light, /^scrypt\$1024\$8\$2\$/);
    assert.equal(await verifyPassword('pw with other params', light), true);
  });

  it('refuses malformed stored values instead of throwing', async () => {
    assert.equal(await verifyPassword('x', 'plaintext'), false);
    assert.equal(await verifyPassword('x', 'bcrypt$1$2$3$4$5'), false);
  });

  it('normalises Unicode (NFC) so the same password typed two ways matches', async () => {
    const hash = await hashPassword('caf\u00e9 au lait');
    assert.equal(await verifyPassword('cafe\u0301 au lait', hash), true);
  });

  it('the decoy hash matches nothing a person would type, and is computed once', async () => {
    const decoy = await decoyPasswordHash();
    assert.equal(await decoyPasswordHash(), decoy);
    assert.equal(await verifyPassword('', decoy), false);
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

// Unit table for the Authorization parser (RFC 6750 §2.1, RFC 9110 §5.5 / §11).
import t from 'tap'
import { MALFORMED, MISSING, hasDuplicateAuthorization, parseBearer } from '../../lib/header.js'

const MAX = 1024

const cases: Array<[string, string | undefined, string | typeof MISSING | typeof MALFORMED]> = [
  ['no header', undefined, MISSING],
  ['empty', '', MISSING],
  ['only spaces', '   ', MISSING],
  ['only tabs (OWS)', '\t\t', MISSING],
  ['Bearer alone', 'Bearer', MALFORMED],
  ['Bearer + trailing space (OWS stripped)', 'Bearer ', MALFORMED],
  ['Bearer + many spaces', 'Bearer     ', MALFORMED],
  ['plain', 'Bearer tok', 'tok'],
  ['lower-case scheme', 'bearer tok', 'tok'],
  ['upper-case scheme', 'BEARER tok', 'tok'],
  ['mixed-case scheme', 'bEaReR tok', 'tok'],
  ['two spaces (1*SP)', 'Bearer  tok', 'tok'],
  ['many spaces', 'Bearer       tok', 'tok'],
  ['tab separator', 'Bearer\ttok', MALFORMED],
  ['space then tab', 'Bearer \ttok', MALFORMED],
  ['trailing space', 'Bearer tok ', 'tok'],
  ['trailing tab', 'Bearer tok\t', 'tok'],
  ['leading OWS', ' \tBearer tok', 'tok'],
  ['other scheme containing Bearer', 'Token Bearer tok', MISSING],
  ['Basic with Bearer inside', 'Basic xBearer tok', MISSING],
  ['Basic', 'Basic dXNlcjpwYXNz', MISSING],
  ['scheme starting with bearer', 'Bearerx tok', MISSING],
  ['scheme Bearer= ', 'Bearer=abc', MISSING],
  ['short other scheme', 'Bear tok', MISSING],
  ['Bearer followed by a comma', 'Bearer,tok', MALFORMED],
  ['two tokens', 'Bearer a b', MALFORMED],
  ['auth-param form', 'Bearer realm="x"', MALFORMED],
  ['comma-separated', 'Bearer a, b', MALFORMED],
  ['illegal characters', 'Bearer a@b', MALFORMED],
  ['quote', 'Bearer "tok"', MALFORMED],
  ['NUL', 'Bearer a\u0000b', MALFORMED],
  ['control character', 'Bearer a\u0001', MALFORMED],
  ['DEL', 'Bearer a\u007f', MALFORMED],
  ['non-ASCII', 'Bearer tökén', MALFORMED],
  ['non-ASCII only', 'Bearer é', MALFORMED],
  ['astral', 'Bearer a\u{1F600}', MALFORMED],
  ['only padding', 'Bearer ==', MALFORMED],
  ['padding in the middle', 'Bearer ab=cd', MALFORMED],
  ['padding at the end', 'Bearer abc==', 'abc=='],
  ['all token68 characters', 'Bearer AZaz09-._~+/=', 'AZaz09-._~+/='],
  ['5,000-character token', 'Bearer ' + 'a'.repeat(5000), MALFORMED],
  ['token exactly at the cap', 'Bearer ' + 'a'.repeat(MAX), 'a'.repeat(MAX)],
  ['token one over the cap', 'Bearer ' + 'a'.repeat(MAX + 1), MALFORMED]
]

t.test('parseBearer table', async (t) => {
  for (const [name, input, expected] of cases) {
    t.equal(parseBearer(input, MAX), expected, `${name}: ${JSON.stringify(input?.slice(0, 40))}`)
  }
})

t.test('parseBearer honours a small cap', async (t) => {
  t.equal(parseBearer('Bearer abcd', 4), 'abcd')
  t.equal(parseBearer('Bearer abcde', 4), MALFORMED)
  // trailing OWS does not count toward the length
  t.equal(parseBearer('Bearer abcd   ', 4), 'abcd')
})

t.test('hasDuplicateAuthorization', async (t) => {
  t.equal(hasDuplicateAuthorization([]), false, 'no headers')
  t.equal(hasDuplicateAuthorization(['Host', 'x', 'Authorization', 'Bearer a']), false, 'one')
  t.equal(hasDuplicateAuthorization(['Authorization', 'Bearer a', 'authorization', 'Bearer b']), true, 'two, any case')
  t.equal(hasDuplicateAuthorization(['AUTHORIZATION', 'Bearer a', 'Host', 'x', 'AuThOrIzAtIoN', 'Bearer a']), true, 'apart, same value')
  t.equal(hasDuplicateAuthorization(['Proxy-Authorization', 'x', 'Authorization', 'Bearer a']), false, 'Proxy-Authorization is another field')
  t.equal(hasDuplicateAuthorization(['X-Authorizatio', 'x', 'authorizationx', 'y', 'Authorization', 'Bearer a']), false, 'near names')
  // a header *value* that reads "authorization" is not a header name
  t.equal(hasDuplicateAuthorization(['X-Note', 'authorization', 'Authorization', 'Bearer a']), false, 'values are skipped')
})

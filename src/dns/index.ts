/** DNS wire core: zero-copy view, cache keys, cached answers and the reply writer. */
export * from './constants.js';
export * from './errors.js';
export {
  nameScan,
  scanName,
  skipName,
  copyNameLower,
  wireNamesEqual,
  nameToText,
  textToWire,
} from './name.js';
export { OptionCursor, validOptions, writeOpt } from './opt.js';
export { MessageView, RecordCursor } from './view.js';
export { keyHash, keyEquals, newKeyBuffer, makeKey, parseKey, keyToText, keyString, type KeyParts } from './key.js';
export {
  type CachedAnswer,
  type TtlPolicy,
  DEFAULT_TTL_POLICY,
  NS_PER_SEC,
  answerFromResponse,
  answerPayloadBytes,
  isExpired,
  recordsBase,
  remainingSeconds,
  resolveTtlPolicy,
} from './answer.js';
export { type ReplyOptions, replyLimit, writeReply, writeRcodeReply, writeFormErr } from './reply.js';

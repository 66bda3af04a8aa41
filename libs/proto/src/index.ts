// Public entry of @woodstream/proto: the generated wire types. Generated files live in
// ./gen and are never edited by hand; `npm run proto:check` fails when they are stale.
export {
  MessageID,
  StreamingCode,
  StreamingError,
  streamingCodeFromJSON,
  streamingCodeToJSON,
} from './gen/common.js';

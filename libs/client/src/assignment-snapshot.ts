import { AccessMode, type FullAssignment, type VersionPair } from '@woodstream/proto';
import { pchannelForVChannel, StreamingError } from '@woodstream/streaming';

/** Where a pchannel lives right now, according to one snapshot. */
export interface Route {
  readonly pchannel: string;
  readonly term: bigint;
  readonly accessMode: AccessMode;
  readonly address: string;
  readonly serverId: bigint;
  /** The snapshot this route came from: a retry waits for a snapshot newer than this. */
  readonly version: VersionPair;
}

/** -1, 0 or 1 as `a` is older than, equal to or newer than `b`: `global` first, then `local`. */
export function compareVersions(a: VersionPair, b: VersionPair): number {
  if (a.global !== b.global) return a.global < b.global ? -1 : 1;
  if (a.local !== b.local) return a.local < b.local ? -1 : 1;
  return 0;
}

/**
 * An immutable view of one FullAssignment: the pchannel list (for hashing vchannels) and the
 * owner of each assigned pchannel. When a pchannel shows up under two nodes (a move the
 * coordinator publishes in two steps), the higher term wins, since terms never go backwards.
 */
export class AssignmentSnapshot {
  readonly version: VersionPair;
  readonly pchannels: readonly string[];
  private readonly owners = new Map<string, Route>();

  constructor(full: FullAssignment) {
    this.version = full.version ?? { global: 0n, local: 0n };
    this.pchannels = [...full.pchannels];
    for (const assignment of full.assignments) {
      const node = assignment.node;
      if (node === undefined || node.address === '') continue;
      for (const channel of assignment.channels) {
        const previous = this.owners.get(channel.name);
        if (previous !== undefined && previous.term >= channel.term) continue;
        this.owners.set(channel.name, {
          pchannel: channel.name,
          term: channel.term,
          accessMode: channel.accessMode,
          address: node.address,
          serverId: node.serverId,
          version: this.version,
        });
      }
    }
  }

  isNewerThan(other: AssignmentSnapshot | undefined): boolean {
    return other === undefined || compareVersions(this.version, other.version) > 0;
  }

  /**
   * The pchannel for an append or read: the caller's choice when given (it must be one of the
   * cluster's pchannels: INVALID_ARGUMENT otherwise), else the vchannel's hash.
   */
  pchannelFor(vchannel: string, pchannel: string | undefined): string {
    if (pchannel !== undefined) {
      if (!this.pchannels.includes(pchannel)) {
        throw new StreamingError(
          'INVALID_ARGUMENT',
          `unknown pchannel ${JSON.stringify(pchannel)}`,
        );
      }
      return pchannel;
    }
    return pchannelForVChannel(vchannel, this.pchannels);
  }

  /**
   * The owner of `pchannel`, or undefined while it is unassigned. A writer needs a read-write
   * assignment; UNSPECIFIED is accepted as read-write because it is the proto default a
   * coordinator that does not set the field sends.
   */
  route(pchannel: string, purpose: 'write' | 'read'): Route | undefined {
    const route = this.owners.get(pchannel);
    if (route === undefined) return undefined;
    if (purpose === 'write' && route.accessMode === AccessMode.ACCESS_MODE_READ_ONLY) {
      return undefined;
    }
    return route;
  }
}

/**
 * Metadata keys of the streaming service, relative to the cluster's root prefix. Woodpecker's
 * own keys live under `wp/` in the same root.
 */
export const streamingKeys = {
  /** JSON {pchannels: string[], createdAtMs}; written once, when the cluster is created. */
  cluster: 'coord/cluster',
  /** JSON PChannelMeta per pchannel. */
  pchannelPrefix: 'coord/pchannel/',
  pchannel: (name: string): string => `coord/pchannel/${name}`,
  /**
   * Vchannel registry: one key per (pchannel, vchannel) ever produced to, JSON {createdAtMs}.
   * Written create-if-absent by the node that owns the pchannel before the first message of the
   * vchannel is appended; never deleted by the service. Under `coord/` so that the coordinator's
   * one watch sees it in revision order with the pchannel records.
   */
  vchannelPrefix: 'coord/vchannel/',
  /** The registry keys of one pchannel; a pchannel name never contains `/`. */
  vchannelsOf: (pchannel: string): string => `coord/vchannel/${pchannel}/`,
  vchannel: (pchannel: string, vchannel: string): string =>
    `coord/vchannel/${pchannel}/${vchannel}`,
  /** JSON {allowRebalance, frozenNodeIds: number[]} — persisted admin settings. */
  settings: 'coord/settings',
  /** Counter of coordinator activations: the `global` part of assignment versions. */
  activations: 'coord/activations',
  /** Leader election of coordinators: one lease-bound key. */
  coordinatorLeader: 'coord/leader',
  /** Node sessions: lease-bound JSON NodeSession, one per live node process. */
  nodeSessionPrefix: 'session/node/',
  nodeSession: (serverId: number): string => `session/node/${serverId}`,
  /** Allocates node server ids. */
  serverIdGen: 'session/idgen',
};

/** What a streaming node publishes about itself in its session key. */
export interface NodeSession {
  serverId: number;
  /** host:port of its gRPC server. */
  address: string;
  /** Woodstream version of the node process. */
  version: string;
  /** Set when the node is shutting down: the coordinator moves its channels away. */
  stopping: boolean;
  startedAtMs: number;
}

/** Assignment state of a pchannel, persisted by the coordinator before it acts on it. */
export type PChannelState = 'UNINITIALIZED' | 'ASSIGNING' | 'ASSIGNED' | 'UNAVAILABLE';

/** The coordinator's record of one pchannel. */
export interface PChannelMeta {
  name: string;
  /** Invariant: never decreases; +1 on every assignment. */
  term: number;
  /** Node that holds (ASSIGNED) or is being given (ASSIGNING) the channel. */
  nodeId: number | null;
  state: PChannelState;
  /** Earlier (term, node) owners that must be told to remove the channel before it is assigned. Bounded. */
  history: { term: number; nodeId: number }[];
  lastAssignedAtMs: number | null;
}

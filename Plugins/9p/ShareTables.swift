/// What the FUSE side of the share remembers between requests — and hands
/// to its successor on a reload: which FUSE node is which 9P fids, which
/// open file handle is which opened fid, and the fids in use.
///
/// A node is a file the kernel has looked up (FUSE LOOKUP, READDIRPLUS,
/// CREATE…) and not yet forgotten; `lookups` counts the kernel's references
/// (FORGET takes them back; at zero its fids are clunked). Nodes are found
/// by the server's qid path, the file's identity, so hard links share one.
/// A 9P fid names a file by its path, though (QEMU's fids are paths, kept
/// up to date across renames made through 9P): so a node keeps one fid per
/// name it was found by (`aliases`, the freshest first), walked from its
/// parent's and never opened. When one name goes (unlink, or a rename over
/// it), that alias is clunked and another takes over; a file whose last
/// name went lives on through its open handles' fids.
struct ShareTables: Codable, Equatable {
    struct Alias: Codable, Equatable {
        var fid: UInt32
        /// The parent node and the name in it.
        var parent: UInt64
        var name: [UInt8]
    }

    struct Node: Codable, Equatable {
        /// Never empty; the first is the one used.
        var aliases: [Alias]
        var qidPath: UInt64
        var isDirectory: Bool
        var lookups: UInt64
        var fid: UInt32 { aliases[0].fid }
        var parent: UInt64 { aliases[0].parent }
        var name: [UInt8] { aliases[0].name }
    }

    struct Handle: Codable, Equatable {
        /// A fid of its own, walked from the node's and opened (Tlopen/Tlcreate).
        var fid: UInt32
        var node: UInt64
        var directory: Bool
    }

    /// Most names a node keeps a fid for.
    static let maxAliases = 8
    static let rootFid: UInt32 = 0

    private(set) var nodes: [UInt64: Node] = [:]
    private var byQid: [UInt64: UInt64] = [:]
    private(set) var handles: [UInt64: Handle] = [:]
    private var nextNode: UInt64 = 2
    private var nextHandle: UInt64 = 1
    private var nextFid: UInt32 = 1
    private var freeFids: [UInt32] = []
    /// Most fids in use at once (nodes + handles + walks in progress).
    static let maxFids = 1 << 20

    enum CodingKeys: CodingKey { case nodes, handles, nextNode, nextHandle, nextFid, freeFids }

    /// `idBase`: where node and handle numbers start. A plugin that starts on
    /// a live FUSE session after a crash must never reuse a number its
    /// predecessor gave the kernel (the kernel would send that node's or
    /// handle's requests to another file): it starts above them
    /// (`freshIDBase`).
    init(rootQid: UInt64, idBase: UInt64 = 0) {
        nextNode = idBase + 2
        nextHandle = idBase + 1
        nodes[FUSEWire.rootNode] = Node(aliases: [Alias(fid: Self.rootFid, parent: FUSEWire.rootNode, name: [])],
                                         qidPath: rootQid, isDirectory: true, lookups: 1)
        byQid[rootQid] = FUSEWire.rootNode
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nodes = try c.decode([UInt64: Node].self, forKey: .nodes)
        handles = try c.decode([UInt64: Handle].self, forKey: .handles)
        nextNode = try c.decode(UInt64.self, forKey: .nextNode)
        nextHandle = try c.decode(UInt64.self, forKey: .nextHandle)
        nextFid = try c.decode(UInt32.self, forKey: .nextFid)
        freeFids = try c.decode([UInt32].self, forKey: .freeFids)
        for (id, n) in nodes { byQid[n.qidPath] = id }
        guard nodes[FUSEWire.rootNode]?.fid == Self.rootFid, nodes.values.allSatisfy({ !$0.aliases.isEmpty }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "no root node"))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nodes, forKey: .nodes)
        try c.encode(handles, forKey: .handles)
        try c.encode(nextNode, forKey: .nextNode)
        try c.encode(nextHandle, forKey: .nextHandle)
        try c.encode(nextFid, forKey: .nextFid)
        try c.encode(freeFids, forKey: .freeFids)
    }

    /// Milliseconds since 2020 × 2^20: a restart comes ≥ 0.5 s after the
    /// crash, so its numbers start ~5 × 10^8 above any its predecessor could
    /// have reached; 2^58 in 2028, room for centuries.
    static func freshIDBase(now: Double) -> UInt64 {
        UInt64(max(0, now - 1_577_836_800) * 1000) << 20
    }

    // MARK: fids

    /// A fid number not in use; nil when `maxFids` are.
    mutating func allocateFid() -> UInt32? {
        if let f = freeFids.popLast() { return f }
        guard nextFid < UInt32(Self.maxFids) else { return nil }
        defer { nextFid += 1 }
        return nextFid
    }

    /// A fid the server no longer knows (clunked, or a walk that failed).
    mutating func releaseFid(_ fid: UInt32) {
        guard fid != Self.rootFid else { return }
        freeFids.append(fid)
    }

    // MARK: nodes

    func node(_ id: UInt64) -> Node? { nodes[id] }
    func node(qidPath: UInt64) -> UInt64? { byQid[qidPath] }

    /// The kernel learnt of the file `fid` names (looked up as `name` in
    /// `parent`): its node, counting one more lookup, and fids no longer
    /// needed (to clunk). A file that already has a node gets `fid` as its
    /// freshest alias (or, if it had that name already, `fid` is surplus).
    mutating func learn(fid: UInt32, qid: NinePWire.Qid, parent: UInt64, name: [UInt8]) -> (node: UInt64, clunk: [UInt32]) {
        let alias = Alias(fid: fid, parent: parent, name: name)
        if let id = byQid[qid.path], var n = nodes[id] {
            n.lookups &+= 1
            defer { nodes[id] = n }
            if id == FUSEWire.rootNode { return (id, [fid]) }
            var clunk: [UInt32] = []
            if let i = n.aliases.firstIndex(where: { $0.parent == parent && $0.name == name }) {
                // The same name again: the new fid is as good; keep the old one.
                clunk.append(fid)
                n.aliases.insert(n.aliases.remove(at: i), at: 0)
            } else {
                n.aliases.insert(alias, at: 0)
                // A directory has one name: if it is found under another, it moved (on the host).
                let keep = n.isDirectory ? 1 : Self.maxAliases
                while n.aliases.count > keep { clunk.append(n.aliases.removeLast().fid) }
            }
            return (id, clunk)
        }
        let id = nextNode
        nextNode += 1
        nodes[id] = Node(aliases: [alias], qidPath: qid.path, isDirectory: qid.isDirectory, lookups: 1)
        byQid[qid.path] = id
        return (id, [])
    }

    /// The kernel dropped `count` lookups: the node's fids if it is now
    /// forgotten (to clunk), else none.
    mutating func forget(_ id: UInt64, count: UInt64) -> [UInt32] {
        guard id != FUSEWire.rootNode, var n = nodes[id] else { return [] }
        n.lookups = n.lookups > count ? n.lookups - count : 0
        guard n.lookups == 0 else {
            nodes[id] = n
            return []
        }
        nodes[id] = nil
        if byQid[n.qidPath] == id { byQid[n.qidPath] = nil }
        return n.aliases.map(\.fid)
    }

    /// `name` in `parent` is gone (unlinked, or renamed over): the fid of
    /// that alias to clunk, if its node has another name to go on with.
    mutating func unlinked(parent: UInt64, name: [UInt8]) -> [UInt32] {
        for (id, n) in nodes where id != FUSEWire.rootNode && n.aliases.count > 1 {
            if let i = n.aliases.firstIndex(where: { $0.parent == parent && $0.name == name }) {
                return [nodes[id]!.aliases.remove(at: i).fid]
            }
        }
        return []
    }

    /// `name` in `parent` was renamed to `newName` in `newParent` (the
    /// server moved the fids with it); what was at the new name is gone.
    /// Fids to clunk.
    mutating func renamed(parent: UInt64, name: [UInt8], to newParent: UInt64, _ newName: [UInt8]) -> [UInt32] {
        let gone = unlinked(parent: newParent, name: newName)
        for (id, n) in nodes where id != FUSEWire.rootNode {
            if let i = n.aliases.firstIndex(where: { $0.parent == parent && $0.name == name }) {
                nodes[id]!.aliases[i].parent = newParent
                nodes[id]!.aliases[i].name = newName
                break
            }
        }
        return gone
    }

    /// The fid to ask a node's attributes with: an open handle's while the
    /// node has one (it reaches the file even after its last name went),
    /// else its freshest alias.
    func attributeFid(_ id: UInt64) -> UInt32? {
        guard let n = nodes[id] else { return nil }
        if !n.isDirectory, let h = handles.values.first(where: { $0.node == id && !$0.directory }) { return h.fid }
        return n.fid
    }

    /// The path of a node from the root, as far as the tables know it.
    func path(_ id: UInt64) -> String {
        var parts: [String] = []
        var at = id
        var steps = 0
        while at != FUSEWire.rootNode, let n = nodes[at], steps < 4096 {
            parts.append(String(decoding: n.name, as: UTF8.self))
            at = n.parent
            steps += 1
        }
        return "/" + parts.reversed().joined(separator: "/")
    }

    // MARK: handles

    mutating func open(fid: UInt32, node: UInt64, directory: Bool) -> UInt64 {
        let h = nextHandle
        nextHandle += 1
        handles[h] = Handle(fid: fid, node: node, directory: directory)
        return h
    }

    func handle(_ h: UInt64) -> Handle? { handles[h] }

    mutating func close(_ h: UInt64) -> Handle? { handles.removeValue(forKey: h) }

    var fidsInUse: Int { nodes.values.reduce(0) { $0 + $1.aliases.count } + handles.count }
}

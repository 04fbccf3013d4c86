/// What the FUSE side of the share remembers between requests — and hands
/// to its successor on a reload: which FUSE node is which 9P fid, which
/// open file handle is which opened fid, and the fids in use.
///
/// A node is a file the kernel has looked up (FUSE LOOKUP, READDIRPLUS,
/// CREATE…) and not yet forgotten: its fid was walked from its parent's and
/// is never opened, so it names the file for getattr, setattr, walks and
/// directory operations. `lookups` counts the kernel's references (FORGET
/// takes them back; at zero the fid is clunked). Hard links share a node:
/// nodes are found by the server's qid path, the file's identity.
struct ShareTables: Codable, Equatable {
    struct Node: Codable, Equatable {
        var fid: UInt32
        var qidPath: UInt64
        var isDirectory: Bool
        /// The parent node and name it was last found by (for logs and re-walks).
        var parent: UInt64
        var name: [UInt8]
        var lookups: UInt64
    }

    struct Handle: Codable, Equatable {
        /// A fid of its own, walked from the node's and opened (Tlopen/Tlcreate).
        var fid: UInt32
        var node: UInt64
        var directory: Bool
    }

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

    init(rootQid: UInt64) {
        nodes[FUSEWire.rootNode] = Node(fid: Self.rootFid, qidPath: rootQid, isDirectory: true, parent: FUSEWire.rootNode,
                                         name: [], lookups: 1)
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
        guard nodes[FUSEWire.rootNode]?.fid == Self.rootFid else {
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
    /// `parent`): its node, counting one more lookup. If the file already
    /// has a node, that one is returned and `fid` is surplus (`surplus`).
    mutating func learn(fid: UInt32, qid: NinePWire.Qid, parent: UInt64, name: [UInt8]) -> (node: UInt64, surplus: UInt32?) {
        if let id = byQid[qid.path], var n = nodes[id] {
            n.lookups &+= 1
            if id != FUSEWire.rootNode { n.parent = parent; n.name = name }
            nodes[id] = n
            return (id, fid)
        }
        let id = nextNode
        nextNode += 1
        nodes[id] = Node(fid: fid, qidPath: qid.path, isDirectory: qid.isDirectory, parent: parent, name: name, lookups: 1)
        byQid[qid.path] = id
        return (id, nil)
    }

    /// One more lookup of an existing node (LINK answers with it).
    mutating func lookedUpAgain(_ id: UInt64) {
        nodes[id]?.lookups &+= 1
    }

    /// The kernel dropped `count` lookups: the node's fid if it is now
    /// forgotten (to clunk), else nil.
    mutating func forget(_ id: UInt64, count: UInt64) -> UInt32? {
        guard id != FUSEWire.rootNode, var n = nodes[id] else { return nil }
        n.lookups = n.lookups > count ? n.lookups - count : 0
        guard n.lookups == 0 else {
            nodes[id] = n
            return nil
        }
        nodes[id] = nil
        if byQid[n.qidPath] == id { byQid[n.qidPath] = nil }
        return n.fid
    }

    /// `name` in `parent` was renamed to `newName` in `newParent`.
    mutating func renamed(parent: UInt64, name: [UInt8], to newParent: UInt64, _ newName: [UInt8]) {
        guard let id = nodes.first(where: { $0.value.parent == parent && $0.value.name == name && $0.key != FUSEWire.rootNode })?.key
        else { return }
        nodes[id]!.parent = newParent
        nodes[id]!.name = newName
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

    var fidsInUse: Int { nodes.count + handles.count }
}

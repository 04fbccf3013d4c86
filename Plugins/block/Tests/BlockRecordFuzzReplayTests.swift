import Foundation
import Testing
@testable import virtiod_block

/// The hand-over record fuzz target's corpus (Plugins/block/Fuzz/Corpus),
/// replayed with every `swift test`: inputs that once found something stay tests.
@Suite struct BlockRecordFuzzReplayTests {
    @Test func corpusReplays() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/Corpus")
        let files = try FileManager.default.contentsOfDirectory(at: corpus, includingPropertiesForKeys: nil)
        #expect(!files.isEmpty)
        for f in files { try Data(contentsOf: f).withUnsafeBytes { fuzzBlockRecord($0) } }
    }
}

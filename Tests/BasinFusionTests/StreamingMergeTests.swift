@testable import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The chunked streaming kernels give exactly the bytes of the in-memory merge (so an exported soup and
/// `basin merge` of its recipe agree bit for bit), including TIES's ties at the trim threshold.
final class StreamingMergeTests: XCTestCase {
    func writeModel(_ url: URL, seed: UInt64, coarse: Bool) throws {
        var rng = SeededGenerator(seed: seed)
        // Values on a coarse grid make many equal magnitudes, so the trim threshold has ties.
        func value() -> Float { coarse ? Float(Int(rng.next() % 17) - 8) / 8 : Float(rng.normal()) * 0.05 }
        let tensors: [(String, Tensor)] = [
            ("model.embed_tokens.weight", Tensor(shape: [300, 160], storage: (0..<48000).map { _ in value() })),
            ("model.layers.0.mlp.up_proj.weight", Tensor(shape: [97, 61], storage: (0..<(97 * 61)).map { _ in value() })),
            ("model.layers.1.mlp.up_proj.weight", Tensor(shape: [97, 61], storage: (0..<(97 * 61)).map { _ in value() })),
            ("model.norm.weight", Tensor(shape: [7], storage: (0..<7).map { _ in value() })),
        ]
        try SafeTensorsWriter.write(tensors, to: url, dtype: { _ in .bf16 })
    }

    func testStreamedEqualsInMemory() throws {
        try forEachSIMDPath { _ in try streamedEqualsInMemory() }
    }

    /// The same with TIES's thresholds found from full histograms (as when the sample's guess of the bins misses).
    func testStreamedTiesWithoutSampleGuesses() throws {
        StreamingKernels.sampleGuesses = false
        defer { StreamingKernels.sampleGuesses = true }
        try forEachSIMDPath { _ in try streamedEqualsInMemory(methods: ["ties"]) }
    }

    /// The same through the paths large tensors take: four-way threshold histograms and output written whenever the
    /// write lock is free (made to apply to these small tensors).
    func testStreamedLargeTensorPaths() throws {
        StreamingKernels.manyWays = 0
        StreamingKernels.outputFlushAt = 1024
        defer {
            StreamingKernels.manyWays = 1 << 20
            StreamingKernels.outputFlushAt = 1 << 17
        }
        try forEachSIMDPath { _ in try streamedEqualsInMemory() }
    }

    func streamedEqualsInMemory(methods only: Set<String>? = nil) throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for coarse in [true, false] {
            let urls = (0..<4).map { dir.appendingPathComponent("m\($0)-\(coarse).safetensors") }
            for (i, u) in urls.enumerated() { try writeModel(u, seed: UInt64(i) + (coarse ? 100 : 0), coarse: coarse) }
            // (method, parameters, whether the third model joins): TIES of two fine-tunes takes the fused BF16 pass.
            // The last: weights whose every sum is a power of two (the fused pass multiplies by the exact reciprocal).
            let methods: [(String, String, Bool, Bool)] = [
                ("linear", "parameters: {normalize: true}", true, false),
                ("task_arithmetic", "parameters: {lambda: 0.7}", true, false),
                ("ties", "parameters: {normalize: true, lambda: 1.3}", true, false),
                ("ties", "parameters: {normalize: false}", true, false),
                ("ties", "parameters: {normalize: true, lambda: 0.8}", false, false),
                ("ties", "parameters: {normalize: false}", false, false),
                ("ties", "parameters: {normalize: true}", false, true),
            ]
            for (method, params, third, unit) in methods where only?.contains(method) ?? true {
                let needsBase = method != "linear"
                let text = """
                merge_method: \(method)
                \(needsBase ? "base_model: \(urls[0].path)" : "")
                models:
                  - model: \(urls[1].path)
                    parameters: {weight: \(unit ? "1.0" : "0.5")\(method == "ties" ? ", density: 0.3" : "")}
                  - model: \(urls[2].path)
                    parameters: {weight: \(unit ? "1.0" : "[0.2, 0.9]")\(method == "ties" ? ", density: [{filter: embed, value: 0.61}, {value: 0.5}]" : "")}
                \(third ? "  - model: \(urls[3].path)\n    parameters: {weight: -0.4\(method == "ties" ? ", density: 0.9" : "")}" : "")
                \(params)
                out_dtype: bfloat16
                """
                let recipe = try MergeRecipe.parse(text, directory: dir)
                let plan = try MergePlan(recipe: recipe)
                let out = dir.appendingPathComponent("\(method)-\(coarse)-\(third)-\(unit).safetensors")
                var options = MergeRunOptions()
                options.hashInputs = false
                options.threads = 2
                let report = try MergeExecutor.run(plan, out: out, options: options)
                XCTAssertEqual(report.streamedTensors, 4, "\(method): every tensor streamed")
                let memory = try ParameterMerge.run(plan)
                let file = try ModelFile.open(out)
                for name in memory.names {
                    let expected = memory[name]!.encoded(as: .bf16)
                    let got = try file.withRawBytes(name) { Array($0) }
                    XCTAssertEqual(got, expected, "\(method) coarse=\(coarse) \(name)")
                }
            }
        }
    }

    func testNonFiniteInputsAreRefusedUnlessAllowed() throws {
        try forEachSIMDPath { _ in try nonFiniteInputsAreRefusedUnlessAllowed() }
    }

    func nonFiniteInputsAreRefusedUnlessAllowed() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.safetensors"), b = dir.appendingPathComponent("b.safetensors")
        var values = [Float](repeating: 1, count: 50_000)
        values[123] = .nan
        values[40_000] = .infinity
        try SafeTensorsWriter.write([("w", Tensor(shape: [50_000], storage: values))], to: a, checkFinite: false)
        try SafeTensorsWriter.write([("w", Tensor(shape: [50_000], repeating: 2))], to: b)
        let recipe = MergeRecipe(method: .linear, models: [.init(model: a.path, parameters: ["weight": .scalar(1)]),
                                                           .init(model: b.path, parameters: ["weight": .scalar(1)])])
        let out = dir.appendingPathComponent("m.safetensors")
        XCTAssertThrowsError(try MergeExecutor.run(try MergePlan(recipe: recipe), out: out)) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .nonFinite)
            XCTAssertEqual((e as? MergeError)?.tensor, "w")
            XCTAssertTrue("\(e)".contains("2 NaN or infinite"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        var options = MergeRunOptions()
        options.allowNonFinite = true
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, options: options)
        XCTAssertTrue(try ModelFile.open(out).tensor("w")[123].isNaN)
        // BF16 inputs are checked inside the fused decode-and-accumulate loops.
        let c = dir.appendingPathComponent("c.safetensors")
        try SafeTensorsWriter.write([("w", Tensor(shape: [50_000], storage: values))], to: c, dtype: { _ in .bf16 }, checkFinite: false)
        let bf16 = MergeRecipe(method: .taskArithmetic, models: [.init(model: c.path, parameters: ["weight": .scalar(1)])], baseModel: b.path)
        XCTAssertThrowsError(try MergeExecutor.run(try MergePlan(recipe: bf16), out: dir.appendingPathComponent("t.safetensors"))) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .nonFinite)
            XCTAssertTrue("\(e)".contains("c.safetensors") && "\(e)".contains("2 NaN or infinite"), "\(e)")
        }
        // TIES keeping every entry (density 1) has no threshold pass; its merge pass checks the inputs itself.
        let ties = MergeRecipe(method: .ties, models: [.init(model: c.path, parameters: ["weight": .scalar(1), "density": .scalar(1)])], baseModel: b.path)
        XCTAssertThrowsError(try MergeExecutor.run(try MergePlan(recipe: ties), out: dir.appendingPathComponent("ties.safetensors"))) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .nonFinite)
            XCTAssertTrue("\(e)".contains("c.safetensors") && "\(e)".contains("2 NaN or infinite"), "\(e)")
        }
        // All BF16 (the fused TIES pass, no threshold pass before it): the second input's NaN/Inf are blamed on it, not on the clean first.
        let base16 = dir.appendingPathComponent("base16.safetensors"), clean16 = dir.appendingPathComponent("clean16.safetensors")
        try SafeTensorsWriter.write([("w", Tensor(shape: [50_000], repeating: 2))], to: base16, dtype: { _ in .bf16 })
        try SafeTensorsWriter.write([("w", Tensor(shape: [50_000], storage: (0..<50_000).map { Float($0 % 13) }))], to: clean16, dtype: { _ in .bf16 })
        let fused = MergeRecipe(method: .ties, models: [.init(model: clean16.path, parameters: ["weight": .scalar(1), "density": .scalar(1)]),
                                                        .init(model: c.path, parameters: ["weight": .scalar(1), "density": .scalar(1)])],
                                baseModel: base16.path)
        XCTAssertThrowsError(try MergeExecutor.run(try MergePlan(recipe: fused), out: dir.appendingPathComponent("fused.safetensors"))) { e in
            XCTAssertEqual((e as? MergeError)?.kind, .nonFinite)
            XCTAssertTrue("\(e)".contains("c.safetensors") && "\(e)".contains("2 NaN or infinite"), "\(e)")
        }
    }
}

final class DigestCacheTests: XCTestCase {
    func testDigestsAreRememberedUntilTheFileChanges() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("m.safetensors")
        try SafeTensorsWriter.write([("w", Tensor(shape: [3], storage: [1, 2, 3]))], to: file)
        let cache = DigestCacheProbe(url: dir.appendingPathComponent("cache/sha256.json"))
        let first = try cache.sha256(file)
        XCTAssertEqual(first, try FileDigest.sha256(file))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cache/sha256.json").path))
        XCTAssertEqual(try cache.sha256(file), first)
        Thread.sleep(forTimeInterval: 0.01)
        try SafeTensorsWriter.write([("w", Tensor(shape: [3], storage: [1, 2, 4]))], to: file)
        XCTAssertNotEqual(try cache.sha256(file), first, "a rewritten file is hashed again")
        XCTAssertEqual(try cache.sha256(file), try FileDigest.sha256(file))
    }

    func testACorruptCacheIsIgnoredAndRebuilt() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("m.safetensors")
        try SafeTensorsWriter.write([("w", Tensor(shape: [3], storage: [1, 2, 3]))], to: file)
        let url = dir.appendingPathComponent("sha256.json")
        let cache = DigestCacheProbe(url: url)
        let truth = try FileDigest.sha256(file)
        for garbage in ["{not json", "[1, 2, 3]", "{\"x\": 5}", String(repeating: "\u{0}", count: 100)] {
            try Data(garbage.utf8).write(to: url)
            XCTAssertNil(cache.cached(file))
            XCTAssertEqual(try cache.sha256(file), truth, garbage)
            XCTAssertEqual(cache.cached(file), truth, "rebuilt after \(garbage)")
        }
        // An entry for this very file whose digest is not a digest is ignored, not returned.
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: truth, with: "not-a-digest")
        try Data(text.utf8).write(to: url)
        XCTAssertNil(cache.cached(file))
        XCTAssertEqual(try cache.sha256(file), truth)
        // A cache location that is a folder: hashing still works, nothing is kept.
        let folderCache = DigestCacheProbe(url: dir)
        XCTAssertEqual(try folderCache.sha256(file), truth)
        XCTAssertNil(folderCache.cached(file))
    }

    /// The checkpoint writer hashes what it writes in order and records it, so a later merge of its output does not
    /// hash it; outputs written by range (out of order) are not recorded.
    func testTheCheckpointWriterRecordsTheDigestsOfWhatItWritesInOrder() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cacheURL = dir.appendingPathComponent("cache/sha256.json")
        let previous = ProcessInfo.processInfo.environment["BASIN_DIGEST_CACHE"]
        setenv("BASIN_DIGEST_CACHE", cacheURL.path, 1)
        defer { if let previous { setenv("BASIN_DIGEST_CACHE", previous, 1) } else { unsetenv("BASIN_DIGEST_CACHE") } }
        let n = 3 << 20  // 2 x 12 MiB of F32: above the cache's 16 MiB minimum
        let plan = [TensorPlan(name: "a", dtype: .f32, shape: [n]), TensorPlan(name: "b", dtype: .f32, shape: [n])]
        let values = Tensor(shape: [n], storage: (0..<n).map { Float($0 % 977) * 0.25 })
        let probe = DigestCacheProbe(url: cacheURL, minimumSize: 16 << 20)
        // Sequential: tensor by tensor.
        let out = dir.appendingPathComponent("seq.safetensors")
        let writer = try CheckpointWriter(out: out, plan: plan, metadata: ["k": "v"], protecting: [])
        try writer.write("a", values)
        try values.withUnsafeBufferPointer { try writer.write("b", rawBytes: UnsafeRawBufferPointer($0)) }
        try writer.finish(durable: false)
        XCTAssertEqual(probe.cached(out), try FileDigest.sha256(out))
        // By range, out of order: not recorded.
        let ranged = dir.appendingPathComponent("ranged.safetensors")
        let w2 = try CheckpointWriter(out: ranged, plan: plan, metadata: ["k": "v"], protecting: [])
        try values.withUnsafeBufferPointer { p in
            let raw = UnsafeRawBufferPointer(p)
            for name in ["b", "a"] {
                try w2.write(name, bytes: UnsafeRawBufferPointer(rebasing: raw[(raw.count / 2)...]), at: raw.count / 2)
                try w2.write(name, bytes: UnsafeRawBufferPointer(rebasing: raw[..<(raw.count / 2)]), at: 0)
            }
        }
        try w2.finish(durable: false)
        XCTAssertNil(probe.cached(ranged))
        // The file changed in place afterwards: the recorded digest no longer applies.
        let handle = try FileHandle(forWritingTo: out)
        try handle.seek(toOffset: 100)
        handle.write(Data([1]))
        try handle.close()
        XCTAssertNil(probe.cached(out))
    }
}

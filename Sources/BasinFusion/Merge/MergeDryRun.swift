import BasinIO
import BasinTensor
import Foundation

/// What a merge would do, without writing anything: the tensors, how each is made, the output files, the peak
/// memory and disk space it needs, and whether the output location can take it.
public struct MergeDryRun: Sendable, Codable {
    public struct TensorLine: Sendable, Codable {
        public var name: String
        public var shape: [Int]
        public var dtype: String
        /// "linear of 3", "copy", ...
        public var how: String
        public var streamed: Bool
        public var file: String
    }

    public var method: String
    public var inputs: [String: String]
    public var tensors: [TensorLine]
    public var outputFiles: [String]
    public var outputBytes: Int
    public var inputBytes: Int
    /// Estimated peak resident memory of the merge.
    public var peakMemoryBytes: Int
    /// Bytes of free space needed on the output's file system.
    public var diskBytesNeeded: Int
    public var diskBytesFree: Int?
    /// Problems found with the output location (empty: the merge can run).
    public var problems: [String]
    /// Things in the recipe that run but are likely not what was meant (filter entries that never apply); the command
    /// prints them on standard error, the JSON report carries them here.
    public var warnings: [String]

    public init(plan: MergePlan, out: URL, options: MergeRunOptions) {
        method = plan.recipe.method.rawValue
        warnings = plan.recipe.shadowedFilterWarnings
        inputs = Dictionary(zip(plan.labels, plan.sources.map(\.displayPath)), uniquingKeysWith: { a, _ in a })
        let plans = plan.tensorPlans
        let layout = CheckpointWriter.layout(out: out, plan: plans, shardSize: options.shardSize)
        let shards = CheckpointWriter.split(plans, shardSize: options.shardSize)
        var fileOf: [String: String] = [:]
        for (i, s) in shards.enumerated() { for p in s { fileOf[p.name] = layout.shards[i].lastPathComponent } }
        tensors = plan.entries.map { e in
            let streamed = e.isFloatingPoint && StreamingKernels.canStream(e, method: plan.recipe.method)
            let how = e.isFloatingPoint ? "\(plan.recipe.method.rawValue) of \(e.inputs.count)" + (e.base != nil ? " + base" : "") : "copy (\(e.outputDType.rawValue))"
            return TensorLine(name: e.name, shape: e.shape, dtype: e.outputDType.rawValue, how: how, streamed: streamed, file: fileOf[e.name] ?? "")
        }
        var files = layout.shards.map(\.path)
        var extraBytes = 0
        var problems: [String] = []
        if CheckpointWriter.isFolder(out) {
            do {
                let extras = try MergeExecutor.extraFiles(plan, out: out, options: options)
                files += extras.map { out.appendingPathComponent($0.name).path }
                extraBytes = extras.reduce(0) { $0 + $1.data.count }
            } catch {
                problems.append("\(error)")
            }
        }
        if let index = layout.index { files.append(index.path) }
        outputFiles = files
        outputBytes = plan.outputBytes
        inputBytes = plan.entries.reduce(0) { $0 + plan.inputBytes($1) }
        peakMemoryBytes = MergeExecutor.estimatedPeakBytes(plan, options: options)
        // Headers hold the recipe and digests in every shard: count them generously.
        let headerBytes = shards.count * (plan.recipe.yaml().utf8.count * 2 + plans.count * 160 + 4096)
        diskBytesNeeded = outputBytes + headerBytes + extraBytes + (layout.index != nil ? plans.count * 120 : 0)
        let probe = CheckpointWriter.isFolder(out) ? Self.existingAncestor(out) : Self.existingAncestor(out.deletingLastPathComponent())
        diskBytesFree = (try? FileManager.default.attributesOfFileSystem(forPath: probe.path))?[.systemFreeSize] as? Int
        if let free = diskBytesFree, free < diskBytesNeeded {
            problems.append("\(probe.path): \(free) bytes free, the merge needs \(diskBytesNeeded)")
        }
        if !FileManager.default.isWritableFile(atPath: probe.path) {
            problems.append("\(probe.path): not writable")
        }
        for f in files {
            do { try OutputGuard.check(output: URL(fileURLWithPath: f), inputs: plan.inputFiles) } catch { problems.append("\(error)") }
        }
        var isDirectory: ObjCBool = false
        if CheckpointWriter.isFolder(out), FileManager.default.fileExists(atPath: out.path, isDirectory: &isDirectory) {
            if !isDirectory.boolValue {
                problems.append("\(out.path): exists and is not a folder")
            } else {
                let ours = Set(files.map { URL(fileURLWithPath: $0).lastPathComponent })
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
                for stale in entries.sorted() where (stale.hasSuffix(".safetensors") || stale.hasSuffix(".safetensors.index.json")) && !ours.contains(stale) {
                    problems.append("\(out.appendingPathComponent(stale).path): a weight file this merge would not replace (the folder would mix two models)")
                }
            }
        } else if !CheckpointWriter.isFolder(out), FileManager.default.fileExists(atPath: out.path, isDirectory: &isDirectory), isDirectory.boolValue {
            problems.append("\(out.path): is a folder, not a file")
        }
        self.problems = problems
    }

    static func existingAncestor(_ url: URL) -> URL {
        var u = url.standardizedFileURL
        while !FileManager.default.fileExists(atPath: u.path) && u.path != "/" { u = u.deletingLastPathComponent() }
        return u
    }

    /// A human-readable report.
    public func text() -> String {
        func bytes(_ n: Int) -> String {
            let units = ["B", "KiB", "MiB", "GiB", "TiB"]
            var v = Double(n), u = 0
            while v >= 1024, u + 1 < units.count { v /= 1024; u += 1 }
            return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
        }
        var lines = ["dry run: \(method), \(tensors.count) tensors, nothing written"]
        lines.append("inputs:")
        for (label, path) in inputs.sorted(by: { $0.key < $1.key }) { lines.append("  \(label) -> \(path)") }
        lines.append("tensors (name, shape, output dtype, how, file):")
        let width = min(64, tensors.map(\.name.count).max() ?? 0)
        for t in tensors {
            let name = t.name.count >= width ? t.name : t.name + String(repeating: " ", count: width - t.name.count)
            lines.append("  \(name)  \(t.shape)  \(t.dtype)  \(t.how)\(t.streamed ? " (streamed)" : "")  \(t.file)")
        }
        lines.append("output files:")
        for f in outputFiles { lines.append("  \(f)") }
        lines.append("output: \(bytes(outputBytes)) from \(bytes(inputBytes)) of input")
        lines.append("peak memory (estimate): \(bytes(peakMemoryBytes))")
        lines.append("disk space needed: \(bytes(diskBytesNeeded)); free: \(diskBytesFree.map(bytes) ?? "unknown")")
        if problems.isEmpty {
            lines.append("ok: the output location can take this merge")
        } else {
            for p in problems { lines.append("problem: \(p)") }
        }
        return lines.joined(separator: "\n")
    }
}

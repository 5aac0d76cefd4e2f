import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

extension MatchMethod: ExpressibleByArgument {}

struct MatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "match",
        abstract: "Permute model B's hidden units to line up with model A's (Git Re-Basin weight or activation matching).",
        discussion: """
        The aligned model computes the same function as B, keeps B's tensor names and dtypes, and records the \
        method and the permutations in its metadata. Permutations are inferred for chains of linear layers; \
        other networks declare them under "permutations" in an architecture file (--arch).
        """)

    @Argument(help: "Reference model A.")
    var modelA: String

    @Argument(help: "Model B, to be permuted.")
    var modelB: String

    @Option(help: "weight (parameter inner products) or activation (unit correlations on --data).")
    var method: MatchMethod = .weight

    @Option(help: "Data set for activation matching: safetensors with x [N, ...] and labels y [N].")
    var data: String?

    @Option(help: "Seed for the order of the weight-matching sweeps.")
    var seed: UInt64 = 0

    @Option(help: "Most weight-matching sweeps over all permutations.")
    var maxSweeps: Int = 100

    @OptionGroup var arch: ArchitectureOptions

    @Option(name: .shortAndLong, help: "Where to write aligned B (.safetensors).")
    var out: String

    @Option(help: "Write the match report (JSON: similarity matrices, assignments, objective per step) here.")
    var report: String?

    @Flag(help: "Print a JSON summary.")
    var json = false

    struct Summary: Encodable {
        struct Layer: Encodable {
            var name: String
            var size: Int
            var moved: Int
            var meanSimilarityBefore: Double
            var meanSimilarityAfter: Double
        }
        var method: String
        var output: String
        var layers: [Layer]
        var objectiveBefore: Double
        var objectiveAfter: Double
        var sweeps: Int
        var seconds: Double
    }

    func validate() throws {
        if method == .activation && data == nil {
            throw ValidationError("--method activation needs --data DATA to run both models on")
        }
    }

    func run() throws {
        let a = try arch.load(modelA)
        let b = try arch.load(modelB)
        try a.params.checkCompatible(with: b.params, "\(a.path) and \(b.path)")
        let spec = try PermutationSpec.make(for: a.architecture, params: a.params)
        guard !spec.groups.isEmpty else {
            throw ValidationError("\(a.path) has no hidden units to permute (a single layer)")
        }
        var dataset: Dataset?
        if let data {
            let d = try Dataset(path: data)
            try LoadedModel.check(d, fits: a)
            dataset = d
        }
        var result = try Alignment.align(reference: a.params, model: b.params, spec: spec, method: method, seed: seed,
                                         maxSweeps: maxSweeps, network: a.network, data: dataset)
        result.report.modelA = a.path
        result.report.modelB = b.path
        if method == .activation { result.report.data = data }

        let outURL = URL(fileURLWithPath: out)
        var metadata = b.source.metadata
        for (k, v) in result.metadata { metadata[k] = v }
        let dtypes = b.dtypes
        try result.aligned.write(to: outURL, dtype: { dtypes[$0] ?? .f32 }, metadata: metadata, protecting: [a.url, b.url])
        if let report {
            let url = URL(fileURLWithPath: report)
            try OutputGuard.check(output: url, inputs: [a.url, b.url, outURL])
            try result.report.jsonData().write(to: url, options: .atomic)
        }

        let r = result.report
        let summary = Summary(
            method: method.rawValue, output: out,
            layers: r.layers.map { .init(name: $0.name, size: $0.size, moved: $0.moved, meanSimilarityBefore: $0.meanSimilarityBefore,
                                         meanSimilarityAfter: $0.meanSimilarityAfter) },
            objectiveBefore: r.objectiveBefore, objectiveAfter: r.objectiveAfter, sweeps: r.sweeps, seconds: r.seconds)
        if json { return try printJSON(summary) }
        print("\(method.rawValue) matching of \(b.path) to \(a.path): \(r.sweeps) sweep(s), \(String(format: "%.3f", r.seconds)) s")
        let width = max(5, r.layers.map(\.name.count).max() ?? 5)
        print("layer".padding(toLength: width, withPad: " ", startingAt: 0) + "  units  moved  mean similarity before -> after")
        for l in summary.layers {
            print(l.name.padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: "  %5d  %5d  %.6g -> %.6g", l.size, l.moved, l.meanSimilarityBefore, l.meanSimilarityAfter))
        }
        print(String(format: "objective %.6g -> %.6g", r.objectiveBefore, r.objectiveAfter))
        print("wrote \(out)" + (report.map { " and \($0)" } ?? ""))
    }
}

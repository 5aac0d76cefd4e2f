import ArgumentParser
import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import Foundation

struct BarriersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "barriers",
        abstract: "The pairwise barrier matrix of N models: the Eq. 1 loss barrier and the accuracy barrier of the straight path between every pair, on each data set.")

    @Argument(help: "Two or more models.")
    var models: [String]

    @Option(help: "Data set (safetensors with x and y); repeat for several (e.g. train and test). The plot shows the last.")
    var data: [String] = []

    @Option(help: "Points along each path (>= 3).")
    var points: Int = 11

    @OptionGroup var arch: ArchitectureOptions
    @OptionGroup var output: AnalysisOutputOptions

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("give at least two models (got \(models.count))") }
        guard !data.isEmpty else { throw ValidationError("give at least one --data set") }
        guard (3...1001).contains(points) else { throw ValidationError("--points must be between 3 and 1001 (got \(points))") }
    }

    struct DataBlock: Encodable {
        var data: String
        var loss: [[Double?]]
        var accuracy: [[Double?]]
    }

    struct PairBlock: Encodable {
        var a: String
        var b: String
        var metrics: [PathMetrics]
    }

    struct Report: Encodable {
        var models: [String]
        var points: Int
        var matrices: [DataBlock]
        var pairs: [PairBlock]
    }

    func run() throws {
        var io = IOPlan()
        try io.models(models)
        try io.files(data)
        try io.file(arch.archFile)
        output.plan(&io)
        try io.check()
        let inputs = io.inputs
        let loaded = try loadCompatible(models, arch: arch)
        let datasets = try data.map { try Dataset(path: $0) }
        for d in datasets { try LoadedModel.check(d, fits: loaded[0]) }
        let progress = ProgressLine(output)
        guard let matrix = try BarrierMatrix.compute(models: loaded.map(\.params), network: loaded[0].network, datasets: datasets,
                                                     points: points, progress: { done, total in progress.show("pair \(done)/\(total)") })
        else { return }
        progress.clear()
        let names = models.map(shortName)
        let last = datasets.count - 1
        let figure = Figure(title: "loss barriers on \(datasets[last].name) (\(points) points per path)",
                            valueLabel: "\(datasets[last].name) loss barrier",
                            body: .matrix(values: matrix.lossBarriers(data: last), labels: names))

        if output.json {
            try printJSON(Report(models: models, points: points,
                                 matrices: datasets.indices.map { DataBlock(data: datasets[$0].name, loss: finite(matrix.lossBarriers(data: $0)),
                                                                            accuracy: finite(matrix.accuracyBarriers(data: $0))) },
                                 pairs: matrix.pairs.map { PairBlock(a: models[$0.a], b: models[$0.b], metrics: $0.metrics) }))
        } else if output.csv {
            print("data,a,b,loss_barrier,loss_barrier_t,accuracy_barrier,max_loss,min_accuracy")
            for (d, set) in datasets.enumerated() {
                for p in matrix.pairs {
                    let m = p.metrics[d]
                    print("\(set.name),\(models[p.a]),\(models[p.b]),\(m.barrier.loss),\(m.barrier.lossAt),\(m.barrier.accuracy),\(m.lossSummary.max),\(m.accuracySummary.min)")
                }
            }
        } else {
            for (d, set) in datasets.enumerated() {
                let loss = Figure(title: "\(set.name): loss barrier (Eq. 1) of the straight path between each pair",
                                  valueLabel: "", body: .matrix(values: matrix.lossBarriers(data: d), labels: names))
                let acc = Figure(title: "\(set.name): accuracy barrier (largest drop below the endpoints' chord)",
                                 valueLabel: "", body: .matrix(values: matrix.accuracyBarriers(data: d), labels: names))
                print(loss.text())
                print(acc.text())
            }
            let off = matrix.pairs.map { $0.metrics[last].barrier.loss }
            if let lo = off.min(), let hi = off.max() {
                print(String(format: "%@: loss barriers from %.5f to %.5f over %d pairs (%d points each)", datasets[last].name, lo, hi,
                             off.count, points))
            }
        }
        try output.writeSVG(figure, inputs: inputs)
    }
}

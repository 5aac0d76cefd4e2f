import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct FitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fit",
        abstract: "Fit a low-loss polychain or Bezier curve between two models (Garipov et al. 2018): endpoints fixed, bends trained on E_t~U(0,1) L(phi(t)), written as safetensors.")

    @Argument(help: "Start model (w_A).")
    var modelA: String

    @Argument(help: "End model (w_B).")
    var modelB: String

    @Option(help: "Training data set (safetensors with x and y).")
    var data: String

    @Option(help: "Curve type: bezier or polychain.")
    var type: PathType = .bezier

    @Option(help: "Number of bends (k = 1: the quadratic Bezier / the one-bend polychain).")
    var bends: Int = 1

    @Option(help: "Start from the bends in this file instead of bends on the segment.")
    var initBends: String?

    @Option(help: "Epochs.")
    var epochs: Int = 30

    @Option(help: "Learning rate.")
    var lr: Float = 1e-2

    @Option(help: "Learning-rate schedule: garipov (full rate for half the epochs, then down to 1%; steady with several bends) or constant.")
    var schedule: LearningRateSchedule = .garipov

    @Option(help: "Minibatch size (a fresh t ~ U(0,1) for every minibatch).")
    var batch: Int = 64

    @Option(help: "Seed for shuffling and the t draws.")
    var seed: UInt64 = 0

    @Option(help: "Optimiser: adam or sgd.")
    var optimizer: OptimizerKind = .adam

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 penalty on the bends (weight decay).")
    var l2: Float = 0

    @Option(help: "After fitting, report the barrier on this data set (25 points).")
    var test: String?

    @OptionGroup var arch: ArchitectureOptions

    @Option(help: "Output bends file (.safetensors).")
    var out: String

    @Flag(help: "No progress output.")
    var quiet = false

    func validate() throws {
        guard type != .linear else { throw ValidationError("--type must be bezier or polychain (a linear path has nothing to fit)") }
        guard bends >= 1 else { throw ValidationError("--bends must be at least 1") }
        guard epochs >= 1, batch >= 1 else { throw ValidationError("--epochs and --batch must be positive") }
        guard lr > 0 else { throw ValidationError("--lr must be positive") }
    }

    func run() throws {
        let a = try arch.load(modelA)
        let b = try arch.load(modelB)
        try a.params.checkCompatible(with: b.params, "\(a.path) and \(b.path)")
        guard a.architecture == b.architecture else { throw ValidationError("\(modelB) has a different architecture from \(modelA)") }
        let train = try Dataset(path: data)
        try LoadedModel.check(train, fits: a)
        let outURL = URL(fileURLWithPath: out)
        try OutputGuard.check(output: outURL, inputs: a.source.files + b.source.files + [URL(fileURLWithPath: data)]
                              + (initBends.map { [URL(fileURLWithPath: $0)] } ?? []))
        let shaA = try FileDigest.sha256(of: a.source), shaB = try FileDigest.sha256(of: b.source)

        var config = CurveFitConfig(type: type, bends: bends, epochs: epochs, learningRate: lr, batchSize: batch, seed: seed)
        config.optimizer = optimizer
        config.schedule = schedule
        config.momentum = momentum
        config.l2 = l2
        let fitter: CurveFitter
        if let initBends {
            let url = URL(fileURLWithPath: initBends)
            let loaded = try BendsFile.read(url, like: a.params)
            try BendsFile.checkEndpoints(loaded, file: url, startSHA256: shaA, endSHA256: shaB)
            guard loaded.type == type, loaded.bends.count == bends else {
                throw ValidationError("\(initBends) holds \(loaded.bends.count) \(loaded.type.rawValue) bend(s); asked for \(bends) \(type.rawValue)")
            }
            fitter = try CurveFitter(network: a.network, path: .withBends(type, from: a.params, to: b.params, bends: loaded.bends),
                                     data: train, config: config)
        } else {
            fitter = try CurveFitter(network: a.network, start: a.params, end: b.params, data: train, config: config)
        }

        let terminal = standardErrorIsTerminal
        var lastDraw = 0.0
        let result = fitter.fit { p in
            guard !quiet else { return }
            if terminal {
                let now = Benchmarks.now()
                guard p.endOfEpoch || now - lastDraw > 0.1 else { return }
                lastDraw = now
                let width = 30
                let filled = Int((p.fraction * Double(width)).rounded(.down))
                let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
                var line = String(format: "\r\u{1B}[K[%@] epoch %d/%d  batch %d/%d  loss %.5f", bar, p.epoch, p.epochs, p.batch, p.batches, p.meanLoss)
                if p.endOfEpoch && p.epoch == p.epochs { line += "\n" }
                FileHandle.standardError.write(Data(line.utf8))
            } else if p.endOfEpoch {
                printError(String(format: "epoch %3d/%d  mean loss %.5f", p.epoch, p.epochs, p.meanLoss))
            }
        }
        let metadata = [BendsFile.fitKey: "optimizer=\(optimizer.rawValue) lr=\(lr) schedule=\(schedule.rawValue) epochs=\(epochs) batch=\(batch) seed=\(seed) l2=\(l2) data=\(URL(fileURLWithPath: data).lastPathComponent)"
                        + (initBends.map { " init=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")]
        try BendsFile.write(result.path, to: outURL, startSHA256: shaA, endSHA256: shaB, extraMetadata: metadata,
                            protecting: a.source.files + b.source.files)
        print("wrote \(out): \(bends) \(type.rawValue) bend(s), final epoch mean loss "
              + String(format: "%.5f", result.epochLosses.last ?? .nan))
        if let test {
            let testData = try Dataset(path: test)
            try LoadedModel.check(testData, fits: a)
            let m = PathEvaluator(path: result.path, network: a.network, datasets: [testData]).metrics(points: 25)![0]
            print(String(format: "%@: loss barrier %.5f, max loss %.5f, min accuracy %.4f", testData.name, m.barrier.loss,
                         m.lossSummary.max, m.accuracySummary.min))
        }
    }
}
extension LearningRateSchedule: ExpressibleByArgument {}

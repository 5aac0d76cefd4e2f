import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train an MLP classifier (seeded and reproducible) and write it as safetensors with PyTorch-style names.")

    @Option(help: "Training data set (safetensors with x and y).")
    var data: String

    @Option(help: "Layer widths, input first, e.g. 64,128,128,10 (ignored with --init).")
    var sizes: String = "64,128,128,10"

    @Option(help: "Activation between layers: relu, tanh or gelu.")
    var activation: Activation = .relu

    @Option(help: "Start from this model's weights instead of a fresh initialisation (fine-tuning).")
    var initFrom: String?

    @Option(help: "Optimiser: sgd or adam.")
    var optimizer: OptimizerKind = .adam

    @Option(help: "Learning rate.")
    var lr: Float = 1e-3

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 weight decay.")
    var weightDecay: Float = 0

    @Option(help: "Epochs.")
    var epochs: Int = 20

    @Option(help: "Minibatch size.")
    var batch: Int = 64

    @Option(help: "Seed for initialisation and shuffling.")
    var seed: UInt64 = 0

    @Option(help: "Train only on rows whose label is in this comma-separated list (e.g. 0,1,2).")
    var classes: String?

    @Option(help: "Train only on the first N rows (after --classes).")
    var limit: Int?

    @Option(help: "Also write a checkpoint every N epochs into --checkpoint-dir.")
    var checkpointEvery: Int?

    @Option(help: "Folder for checkpoints.")
    var checkpointDir: String?

    @Option(help: "Checkpoints are named <name>-epochNNN.safetensors (default: the --out file's stem).")
    var checkpointName: String?

    @Option(help: "Evaluate on this data set after training.")
    var test: String?

    @Option(help: "Output .safetensors file.")
    var out: String

    @Flag(help: "No per-epoch lines.")
    var quiet = false

    func run() throws {
        var dataset = try Dataset(path: data)
        if let classes {
            guard dataset.labelShape.isEmpty else { throw ValidationError("--classes needs class labels y [N]; '\(data)' holds a label per position") }
            let keep = Set(try classes.split(separator: ",").map { s -> Int32 in
                guard let v = Int32(s.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--classes: '\(s)' is not a class index") }
                return v
            })
            dataset = dataset.subset(dataset.y.indices.filter { keep.contains(dataset.y[$0]) })
        }
        if let limit { dataset = dataset.slice(0..<min(limit, dataset.count)) }
        guard dataset.count > 0 else { throw ValidationError("no training rows left after --classes/--limit") }

        var network: Network
        var params: ParameterSet
        let inputs: [URL]
        if let initFrom {
            let base = try LoadedModel(path: initFrom, architecture: ArchitectureChoice(activation: activation))
            network = base.network
            params = base.params
            inputs = base.source.files
        } else {
            let widths = try sizes.split(separator: ",").map { s -> Int in
                guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v > 0 else { throw ValidationError("--sizes: '\(s)' is not a positive width") }
                return v
            }
            guard widths.count >= 2 else { throw ValidationError("--sizes needs at least an input and an output width") }
            let layers = (0..<(widths.count - 1)).map { (weight: "layers.\($0).weight", bias: Optional("layers.\($0).bias")) }
            let arch = Architecture.mlp(layers: layers, activation: activation)
            var g = SeededGenerator(seed: seed)
            params = Trainer.initialise(arch, sizes: widths, generator: &g)
            network = Network(arch)
            inputs = []
        }
        let outURL = URL(fileURLWithPath: out)
        try OutputGuard.check(output: outURL, inputs: inputs + [URL(fileURLWithPath: data)])
        var config = TrainingConfig()
        config.optimizer = optimizer
        config.learningRate = lr
        config.momentum = momentum
        config.weightDecay = weightDecay
        config.epochs = epochs
        config.batchSize = batch
        config.seed = seed
        let metadata = ["basin.trained": "optimizer=\(optimizer.rawValue) lr=\(lr) epochs=\(epochs) batch=\(batch) seed=\(seed) activation=\(activation.rawValue)"
                        + (initFrom.map { " init=\(URL(fileURLWithPath: $0).lastPathComponent)" } ?? "")
                        + (classes.map { " classes=\($0)" } ?? "") + (limit.map { " limit=\($0)" } ?? "")]
        try Trainer.train(network: network, params: &params, data: dataset, config: config, progress: { r in
            if !quiet { printError(String(format: "epoch %3d  loss %.5f  accuracy %.4f", r.epoch, r.meanLoss, r.accuracy)) }
        }, checkpoint: { epoch, p in
            guard let every = checkpointEvery, let dir = checkpointDir, epoch % every == 0 else { return }
            let stem = checkpointName ?? outURL.deletingPathExtension().lastPathComponent
            let url = URL(fileURLWithPath: dir).appendingPathComponent(String(format: "%@-epoch%03d.safetensors", stem, epoch))
            try p.write(to: url, metadata: metadata.merging(["basin.epoch": String(epoch)]) { a, _ in a })
        })
        try params.write(to: outURL, metadata: metadata)
        if let test {
            let m = network.evaluate(params, on: try Dataset(path: test))
            print(String(format: "%@: test loss %.6f  accuracy %.4f", out, m.loss, m.accuracy))
        }
    }
}

import Foundation

/// Checks on the paths a command reads, made before anything is opened: only regular files (and folders
/// where a folder is meant) are read; FIFOs, devices and sockets are refused by name, so nothing can hang
/// on them, and a loop of symbolic links says so.
public enum FileCheck {
    /// Largest index, recipe or architecture file read whole into memory.
    public static let smallFileLimit = 64 << 20

    /// Throws unless `path` names a regular file, or a folder when `folderAllowed`.
    public static func input(_ path: String, folderAllowed: Bool = false) throws {
        switch Platform.fileKind(path) {
        case .regular: return
        case .directory:
            if folderAllowed { return }
            throw BasinIOError(.notRegularFile, file: path, "is a folder; a file is needed here")
        case .missing:
            throw BasinIOError(.unreadable, file: path, "cannot be read: it does not exist")
        case .symlinkLoop:
            throw BasinIOError(.symlinkLoop, file: path, "cannot be read: its symbolic links form a loop")
        case let .failed(code):
            throw BasinIOError(.unreadable, file: path, "cannot be read (\(String(cString: strerror(code))))")
        case let kind:
            throw BasinIOError(.notRegularFile, file: path, "is \(kind.label), not a regular file; Basin reads only regular files")
        }
    }

    /// Throws unless `path` names an existing folder (e.g. where checkpoints go).
    public static func folder(_ path: String) throws {
        switch Platform.fileKind(path) {
        case .directory: return
        case .missing: throw BasinIOError(.unreadable, file: path, "is not an existing folder")
        case .symlinkLoop: throw BasinIOError(.symlinkLoop, file: path, "cannot be used: its symbolic links form a loop")
        case let kind: throw BasinIOError(.notRegularFile, file: path, "is \(kind.label), not a folder")
        }
    }

    /// Throws unless `path` is an existing folder or missing (an output folder the command creates); a file,
    /// FIFO or device there is refused by name.
    public static func outputDirectory(_ path: String) throws {
        switch Platform.fileKind(path) {
        case .directory, .missing: return
        case .symlinkLoop: throw BasinIOError(.symlinkLoop, file: path, "cannot be used: its symbolic links form a loop")
        case let kind: throw BasinIOError(.notRegularFile, file: path, "is \(kind.label); an output folder is needed here")
        }
    }

    /// Throws unless the folder an output file goes into exists.
    public static func outputFolder(of url: URL) throws {
        let parent = url.deletingLastPathComponent().path
        switch Platform.fileKind(parent) {
        case .directory: return
        case .missing: throw BasinIOError(.writeFailed, file: url.path, "cannot be written: the folder \(parent) does not exist")
        case let kind: throw BasinIOError(.writeFailed, file: url.path, "cannot be written: \(parent) is \(kind.label), not a folder")
        }
    }

    /// The bytes of a small regular file (an index, a recipe, an architecture file), refusing FIFOs, devices
    /// and files over `limit` bytes.
    public static func read(_ url: URL, limit: Int = smallFileLimit) throws -> Data {
        try input(url.path)
        do {
            return Data(try Platform.readFile(url.path, limit: limit))
        } catch let f as Platform.Failure {
            if f.code == EFBIG {
                throw BasinIOError(.fileTooLarge, file: url.path, "is larger than \(limit) bytes; this kind of file is never that big")
            }
            throw BasinIOError(.unreadable, file: url.path, "cannot be read (\(f.message))")
        }
    }

    /// Text of a small UTF-8 file.
    public static func readText(_ url: URL, limit: Int = smallFileLimit) throws -> String {
        let data = try read(url, limit: limit)
        guard let text = String(data: data, encoding: .utf8) else {
            throw BasinIOError(.unreadable, file: url.path, "is not UTF-8 text")
        }
        return text
    }
}

/// An output of a command, as `OutputGuard` compares it with the inputs.
public enum OutputTarget: Sendable {
    /// One file, replaced atomically.
    case file(URL)
    /// A checkpoint as `CheckpointWriter` lays it out: a `.safetensors` file (split into
    /// `STEM-00001-of-0000N.safetensors` + `STEM.safetensors.index.json` beside it when large), or a folder
    /// (a Hugging Face layout: weights, index, config and tokenizer files), in which no input may live.
    case checkpoint(URL)
}

/// One rule for outputs: before any work, every output is compared with every input the command reads (by
/// device and inode when the file exists, by the path with symbolic links and `..` resolved otherwise); an
/// output that is an input, or two outputs that are one file, are refused and nothing is written.
public enum OutputGuard {
    public static func check(output: URL, inputs: [URL]) throws {
        try check(outputs: [.file(output)], inputs: inputs)
    }

    public static func check(outputs: [OutputTarget], inputs: [URL]) throws {
        let ins = inputs.flatMap(expand).map(Identity.init)
        var explicit: [(URL, Identity)] = []
        for target in outputs {
            let layout = try Layout(target)
            for url in layout.files {
                let id = Identity(url)
                if let clash = ins.first(where: { $0.same(as: id) }) {
                    throw clashError(output: url, input: clash)
                }
                if let other = explicit.first(where: { $0.1.same(as: id) }) {
                    throw BasinIOError(.outputsCollide, file: url.path, "is given as two outputs of this command (also as \(other.0.path))")
                }
                explicit.append((url, id))
            }
            if let family = layout.family {
                if let clash = ins.first(where: { family.contains($0) }) {
                    // A folder output may write weights, shards, index, config and tokenizer files, so no input may
                    // live in it; say that, rather than claim the input itself would be replaced.
                    throw BasinIOError(.wouldOverwriteInput, file: target.url.path, family.stem == nil
                        ? "refusing to write here: the folder holds \(clash.url.path), an input of this command (a folder output gets weights, config and tokenizer files, so it may hold no input; choose another folder)"
                        : "refusing to write here: a shard or index of this output would replace \(clash.url.path), an input of this command")
                }
                // Hard links: an existing file of the family that is an input under another name.
                for existing in family.existingMembers() {
                    let id = Identity(existing)
                    if let clash = ins.first(where: { $0.same(as: id) }) { throw clashError(output: existing, input: clash) }
                }
            }
        }
        // A file output inside another output's shard family (e.g. --report model.safetensors.index.json).
        for target in outputs {
            guard let family = try Layout(target).family else { continue }
            if let (url, _) = explicit.first(where: { family.contains($0.1) && !target.isSame(as: $0.0) }) {
                throw BasinIOError(.outputsCollide, file: url.path, "is also where the output \(target.url.path) would put a shard or its index")
            }
        }
    }

    private static func clashError(output: URL, input: Identity) -> BasinIOError {
        let how = Platform.resolvedPath(output.path) == input.resolved ? "" : " (the same file under another name)"
        return BasinIOError(.wouldOverwriteInput, file: output.path,
                            "refusing to write here: it is an input of this command (\(input.url.path))\(how)")
    }

    /// A folder input stands for the files in it.
    private static func expand(_ url: URL) -> [URL] {
        guard case .directory = Platform.fileKind(url.path) else { return [url] }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return [url] + entries.sorted().map { url.appendingPathComponent($0) }
    }

    struct Identity {
        let url: URL
        let device: (UInt64, UInt64)?
        let resolved: String

        init(_ url: URL) {
            self.url = url
            device = Platform.fileIdentity(url.path)
            resolved = Platform.resolvedPath(url.path)
        }

        func same(as other: Identity) -> Bool {
            if let a = device, let b = other.device { return a == b }
            return resolved == other.resolved
        }

        var folder: String { (resolved as NSString).deletingLastPathComponent }
        var name: String { (resolved as NSString).lastPathComponent }
    }

    /// The files an output target may write.
    struct Layout {
        var files: [URL]
        var family: Family?

        init(_ target: OutputTarget) throws {
            switch target {
            case let .file(url):
                try Layout.checkWritableFile(url)
                files = [url]
                family = nil
            case let .checkpoint(url):
                if url.pathExtension == "safetensors" {
                    try Layout.checkWritableFile(url)
                    let stem = url.deletingPathExtension().lastPathComponent
                    files = [url]
                    family = Family(folder: url.deletingLastPathComponent(), stem: stem)
                } else {
                    switch Platform.fileKind(url.path) {
                    case .directory, .missing: break
                    case .regular:
                        throw BasinIOError(.notRegularFile, file: url.path, "is a file; a sharded output goes into a folder (or name a .safetensors file)")
                    case let kind:
                        throw BasinIOError(.notRegularFile, file: url.path, "is \(kind.label); an output must be a folder or a regular file")
                    }
                    files = []
                    family = Family(folder: url, stem: nil)
                }
            }
        }

        /// An existing output must be a regular file: renaming over a FIFO, a device or a folder is refused.
        static func checkWritableFile(_ url: URL) throws {
            switch Platform.fileKind(url.path) {
            case .regular, .missing: return
            case .symlinkLoop: throw BasinIOError(.symlinkLoop, file: url.path, "cannot be written: its symbolic links form a loop")
            case let kind: throw BasinIOError(.notRegularFile, file: url.path, "is \(kind.label); an output must be a regular file")
            }
        }
    }

    /// `STEM-#####-of-#####.safetensors` and `STEM.safetensors.index.json` in a folder, or (no stem) every file
    /// in a folder output: a merge there would replace or mix with whatever model files it holds.
    struct Family {
        let folder: URL
        let resolvedFolder: String
        let stem: String?

        init(folder: URL, stem: String?) {
            self.folder = folder
            resolvedFolder = Platform.resolvedPath(folder.path)
            self.stem = stem
        }

        func matches(_ name: String) -> Bool {
            guard let stem else { return true }
            if name == stem + ".safetensors.index.json" { return true }
            guard name.hasPrefix(stem + "-"), name.hasSuffix(".safetensors") else { return false }
            let middle = name.dropFirst(stem.count + 1).dropLast(".safetensors".count)
            let parts = middle.split(separator: "-", omittingEmptySubsequences: false)
            return parts.count == 3 && parts[1] == "of" && parts[0].count == 5 && parts[2].count == 5
                && parts[0].allSatisfy(\.isNumber) && parts[2].allSatisfy(\.isNumber)
        }

        func contains(_ id: Identity) -> Bool {
            id.folder == resolvedFolder && matches(id.name)
        }

        func existingMembers() -> [URL] {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            return entries.filter(matches).sorted().map { folder.appendingPathComponent($0) }
        }
    }
}

extension OutputTarget {
    public var url: URL {
        switch self {
        case let .file(u), let .checkpoint(u): u
        }
    }

    func isSame(as url: URL) -> Bool { Platform.resolvedPath(self.url.path) == Platform.resolvedPath(url.path) }
}

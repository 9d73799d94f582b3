import Foundation
import XLlama

/// A verb of the command line.
protocol Command {
  static var name: String { get }
  static var summary: String { get }
  static var usage: String { get }
  static var options: [OptionSpec] { get }
  /// A word that must follow the verb (`xllama data prepare`), or nil.
  static var subcommand: String? { get }
  static func run(_ options: ParsedOptions) throws
}

extension Command {
  static var subcommand: String? { nil }
}

let commands: [any Command.Type] = [
  GenerateCommand.self, ChatCommand.self, TokenizeCommand.self, ScoreCommand.self,
  InspectCommand.self, LinearizeCommand.self, DataCommand.self, DistillCommand.self, PlotCommand.self,
  EvalCommand.self, BenchCommand.self,
]

func printError(_ message: String) {
  FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
}

@MainActor func mainHelp() -> String {
  var lines = [
    "xllama: turn a Llama-family transformer into an xLlama (mLSTM token mixer) and run both on CPU.",
    "",
    "usage: xllama <command> [options]",
    "",
    "commands:",
  ]
  for command in commands {
    lines.append("  " + command.name.padding(toLength: 12, withPad: " ", startingAt: 0) + command.summary)
  }
  lines += ["", "Run 'xllama <command> --help' for a command's options. A model is a .gguf file or a Hugging Face folder."]
  return lines.joined(separator: "\n")
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.count == 2, arguments[0] == "help", let command = commands.first(where: { $0.name == arguments[1] }) {
  print(helpText(verb: command.name, summary: command.summary, usage: command.usage, specs: command.options))
  exit(0)
}
guard let verb = arguments.first, verb != "--help", verb != "-h", verb != "help" else {
  print(mainHelp())
  exit(arguments.isEmpty ? 2 : 0)
}
guard let command = commands.first(where: { $0.name == verb }) else {
  printError(CommandLineError.unknownVerb(verb).description)
  exit(2)
}
var rest = Array(arguments.dropFirst())
if let subcommand = command.subcommand, rest.first != "--help", rest.first != "-h" {
  guard rest.first == subcommand else {
    printError("'xllama \(verb)' needs the subcommand '\(subcommand)'; see 'xllama \(verb) --help'")
    exit(2)
  }
  rest.removeFirst()
}
do {
  let options = try ParsedOptions(verb: verb, arguments: rest, specs: command.options)
  if options.helpRequested {
    print(helpText(verb: command.name, summary: command.summary, usage: command.usage, specs: command.options))
    exit(0)
  }
  try command.run(options)
} catch let error as CommandLineError {
  printError(error.description)
  exit(2)
} catch {
  printError("\(error)")
  exit(1)
}

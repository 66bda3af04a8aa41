{{/* Names, labels and the service configurations rendered from values. */}}

{{- define "woodstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "woodstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "woodstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "woodstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "woodstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "woodstream.labels" -}}
helm.sh/chart: {{ include "woodstream.chart" . }}
{{ include "woodstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: woodstream
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "node") */}}
{{- define "woodstream.componentLabels" -}}
{{ include "woodstream.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "woodstream.componentSelector" -}}
{{ include "woodstream.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "woodstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "woodstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "woodstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "woodstream.configDir" -}}/etc/woodstream{{- end -}}
{{- define "woodstream.adminTokenFile" -}}/etc/woodstream/admin/{{ .Values.admin.tokenKey }}{{- end -}}

{{/* Fields every service config shares: log level, traces, and the admin token file when a
     Secret is given (coordinator and standalone only: pass (dict "root" $ "admin" true)). */}}
{{- define "woodstream.commonConfig" -}}
{{- $out := dict "logLevel" .root.Values.logLevel -}}
{{- if .root.Values.otlpEndpoint -}}
{{- $_ := set $out "otlpEndpoint" .root.Values.otlpEndpoint -}}
{{- end -}}
{{- if .admin -}}
{{- $_ := set $out "adminProtectReads" .root.Values.admin.protectReads -}}
{{- if .root.Values.admin.existingSecret -}}
{{- $_ := set $out "adminTokenFile" (include "woodstream.adminTokenFile" .root) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "woodstream.metadataConfig" -}}
{{- toJson (dict "kind" "etcd" "etcdEndpoints" .Values.etcd.endpoints "rootPrefix" .Values.etcd.rootPrefix) -}}
{{- end -}}

{{/* The coordinator's config file: values' coordinator.config with the chart's keys on top. */}}
{{- define "woodstream.coordinatorConfig" -}}
{{- $c := .Values.coordinator -}}
{{- $chart := dict
  "grpc" (dict "host" "0.0.0.0" "port" $c.ports.grpc)
  "http" (dict "host" "0.0.0.0" "port" $c.ports.http)
  "metadata" (include "woodstream.metadataConfig" . | fromJson) -}}
{{- $chart = mustMergeOverwrite $chart (include "woodstream.commonConfig" (dict "root" . "admin" true) | fromJson) -}}
{{- toPrettyJson (mustMergeOverwrite (deepCopy $c.config) $chart) -}}
{{- end -}}

{{/* The streaming node's config file. The advertised address comes from the pod IP (env). */}}
{{- define "woodstream.nodeConfig" -}}
{{- $n := .Values.node -}}
{{- $s3 := .Values.storage.s3 -}}
{{- $chart := dict
  "grpc" (dict "host" "0.0.0.0" "port" $n.ports.grpc)
  "http" (dict "host" "0.0.0.0" "port" $n.ports.http)
  "metadata" (include "woodstream.metadataConfig" . | fromJson)
  "storage" (dict "mode" "object" "s3" (dict
      "endpoint" $s3.endpoint
      "region" $s3.region
      "bucket" $s3.bucket
      "keyPrefix" $s3.keyPrefix
      "conditionalWrites" $s3.conditionalWrites)) -}}
{{- $chart = mustMergeOverwrite $chart (include "woodstream.commonConfig" (dict "root" . "admin" false) | fromJson) -}}
{{- toPrettyJson (mustMergeOverwrite (deepCopy $n.config) $chart) -}}
{{- end -}}

{{- define "woodstream.standaloneConfig" -}}
{{- $s := .Values.standalone -}}
{{- $chart := dict
  "host" "0.0.0.0"
  "dataDir" "/var/lib/woodstream/data"
  "coordinatorPort" $s.ports.grpc
  "nodePort" $s.ports.nodeGrpc
  "httpPort" $s.ports.http -}}
{{- $chart = mustMergeOverwrite $chart (include "woodstream.commonConfig" (dict "root" . "admin" true) | fromJson) -}}
{{- /* Clients in other pods reach the node through the Service; standalone.config may override. */ -}}
{{- $defaults := dict "advertiseHost" (printf "%s.%s.svc" (include "woodstream.fullname" .) .Release.Namespace) -}}
{{- toPrettyJson (mustMergeOverwrite $defaults (deepCopy $s.config) $chart) -}}
{{- end -}}

{{/* drainTimeoutMs of the nodes (their config, else the service default). */}}
{{- define "woodstream.nodeDrainTimeoutMs" -}}
{{- $v := dig "drainTimeoutMs" 30000 .Values.node.config -}}
{{- int64 $v -}}
{{- end -}}

{{- define "woodstream.nodeTerminationGraceSeconds" -}}
{{- $drain := div (add (include "woodstream.nodeDrainTimeoutMs" . | int64) 999) 1000 -}}
{{- $floor := add .Values.node.preStopSleepSeconds $drain -}}
{{- if kindIs "invalid" .Values.node.terminationGracePeriodSeconds -}}
{{- add $floor 15 -}}
{{- else -}}
{{- $given := .Values.node.terminationGracePeriodSeconds | int64 -}}
{{- if le $given $floor -}}
{{- fail (printf "node.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainTimeoutMs (%d s), or a drain is cut short" $given $floor) -}}
{{- end -}}
{{- $given -}}
{{- end -}}
{{- end -}}

{{/* Soft or hard pod anti-affinity on the host: (dict "root" $ "component" "node" "mode" "soft") */}}
{{- define "woodstream.antiAffinity" -}}
{{- if eq .mode "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "woodstream.componentSelector" . | nindent 10 }}
{{- else if eq .mode "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "woodstream.componentSelector" . | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* Affinity of a workload: the values' affinity, else the anti-affinity preset. */}}
{{- define "woodstream.affinity" -}}
{{- if .values.affinity -}}
{{- toYaml .values.affinity -}}
{{- else -}}
{{- include "woodstream.antiAffinity" (dict "root" .root "component" .component "mode" (default "none" .values.antiAffinity)) -}}
{{- end -}}
{{- end -}}

{{- define "woodstream.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end -}}

{{/* Env of the S3 credentials from a Secret (nodes). */}}
{{- define "woodstream.s3Env" -}}
{{- if .Values.storage.s3.existingSecret -}}
- name: WOODSTREAM_NODE_STORAGE_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.storage.s3.existingSecret }}
      key: {{ .Values.storage.s3.accessKeyIdKey }}
- name: WOODSTREAM_NODE_STORAGE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.storage.s3.existingSecret }}
      key: {{ .Values.storage.s3.secretAccessKeyKey }}
{{- end }}
{{- end -}}

{{- define "woodstream.validate" -}}
{{- if eq .Values.mode "cluster" -}}
{{- if not .Values.etcd.endpoints -}}
{{- fail "cluster mode needs etcd.endpoints (an external etcd)" -}}
{{- end -}}
{{- if not .Values.storage.s3.bucket -}}
{{- fail "cluster mode needs storage.s3.bucket (channels move between nodes, so the WAL must live in object storage)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
